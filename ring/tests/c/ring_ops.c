/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Applies a sequence of ring operations with Xen's own io/ring.h macros, for the differential
 * test in ring/tests/differential.rs.
 *
 * stdin: "<kind> <pages> <start>" then one operation per token group:
 *   q ID   front queues a request built from ID     (prints "full" if RING_FULL)
 *   p      front RING_PUSH_REQUESTS_AND_CHECK_NOTIFY (prints "notify 0|1")
 *   g      front consumes a response                 (prints "rsp ID" or "none")
 *   h      front RING_FINAL_CHECK_FOR_RESPONSES      (prints "work 0|1")
 *   c      back consumes a request                   (prints "req ID" or "none")
 *   r ID   back queues a response built from ID      (prints "noreq" if none is unanswered)
 *   s      back RING_PUSH_RESPONSES_AND_CHECK_NOTIFY (prints "notify 0|1")
 *   f      back RING_FINAL_CHECK_FOR_REQUESTS        (prints "work 0|1")
 * stdout: "entries N", one line per operation that prints, then "page " and the hex bytes of
 * the whole shared area.
 *
 * kind "small": 16-byte request and response; kind "blk": a 112-byte request (the size of a
 * blkif request on x86_64) and a 16-byte response.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ring.h needs these from its includer; the interface version keeps it from redefining them. */
#define __XEN_INTERFACE_VERSION__ 0x00040e00
#define xen_mb() __sync_synchronize()
#define xen_rmb() __sync_synchronize()
#define xen_wmb() __sync_synchronize()
#include <xen/io/ring.h>

struct small_req { uint64_t id; uint32_t op; uint32_t arg; };
struct small_rsp { uint64_t id; int32_t status; uint32_t pad; };
DEFINE_RING_TYPES(small, struct small_req, struct small_rsp);

struct blk_req { uint64_t words[14]; };
struct blk_rsp { uint64_t id; int64_t status; };
DEFINE_RING_TYPES(blk, struct blk_req, struct blk_rsp);

/* Payloads derived from an id; ring/tests/differential.rs builds the same. */
static struct small_req small_req(uint64_t id)
{
	struct small_req r = { id, (uint32_t)(id * 3), (uint32_t)id ^ 0x5a5a };
	return r;
}

static struct small_rsp small_rsp(uint64_t id)
{
	struct small_rsp r = { id, -(int32_t)id, 0 };
	return r;
}

static struct blk_req blk_req(uint64_t id)
{
	struct blk_req r;
	for (int k = 0; k < 14; k++)
		r.words[k] = id * 0x0101010101010101ull + (uint64_t)k;
	return r;
}

static struct blk_rsp blk_rsp(uint64_t id)
{
	struct blk_rsp r = { id, -(int64_t)id };
	return r;
}

/*
 * One interpreter per ring type; the macros are the same, only the types differ. RING_IDX is
 * unsigned int, so every index below wraps at 2^32 exactly as the Rust side's.
 */
#define INTERPRET(T)                                                            \
static void run_##T(void *page, size_t size, RING_IDX start)                    \
{                                                                               \
	T##_sring_t *s = page;                                                  \
	T##_front_ring_t front;                                                 \
	T##_back_ring_t back;                                                   \
	char op;                                                                \
	unsigned long long id;                                                  \
	int flag;                                                               \
                                                                                \
	SHARED_RING_INIT(s);                                                    \
	s->req_prod = s->rsp_prod = start;                                      \
	s->req_event = s->rsp_event = start + 1;                                \
	FRONT_RING_ATTACH(&front, s, start, size);                              \
	BACK_RING_ATTACH(&back, s, start, size);                                \
	printf("entries %u\n", RING_SIZE(&front));                              \
                                                                                \
	while (scanf(" %c", &op) == 1) {                                        \
		switch (op) {                                                   \
		case 'q':                                                       \
			if (scanf("%llu", &id) != 1)                            \
				exit(2);                                        \
			if (RING_FULL(&front)) {                                \
				printf("full\n");                               \
				break;                                          \
			}                                                       \
			*RING_GET_REQUEST(&front, front.req_prod_pvt) = T##_req(id); \
			front.req_prod_pvt++;                                   \
			break;                                                  \
		case 'p':                                                       \
			RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&front, flag);      \
			printf("notify %d\n", flag);                            \
			break;                                                  \
		case 'g':                                                       \
			if (!RING_HAS_UNCONSUMED_RESPONSES(&front)) {           \
				printf("none\n");                               \
				break;                                          \
			} else {                                                \
				struct T##_rsp rsp;                             \
				RING_COPY_RESPONSE(&front, front.rsp_cons, &rsp); \
				front.rsp_cons++;                               \
				printf("rsp %llu\n", (unsigned long long)rsp.id); \
			}                                                       \
			break;                                                  \
		case 'h':                                                       \
			RING_FINAL_CHECK_FOR_RESPONSES(&front, flag);           \
			printf("work %d\n", !!flag);                            \
			break;                                                  \
		case 'c':                                                       \
			if (!RING_HAS_UNCONSUMED_REQUESTS(&back)) {             \
				printf("none\n");                               \
				break;                                          \
			} else {                                                \
				struct T##_req req;                             \
				RING_COPY_REQUEST(&back, back.req_cons, &req);  \
				back.req_cons++;                                \
				printf("req %llu\n", (unsigned long long)*(uint64_t *)&req); \
			}                                                       \
			break;                                                  \
		case 'r':                                                       \
			if (scanf("%llu", &id) != 1)                            \
				exit(2);                                        \
			if (back.req_cons == back.rsp_prod_pvt) {               \
				printf("noreq\n");                              \
				break;                                          \
			}                                                       \
			*RING_GET_RESPONSE(&back, back.rsp_prod_pvt) = T##_rsp(id); \
			back.rsp_prod_pvt++;                                    \
			break;                                                  \
		case 's':                                                       \
			RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&back, flag);      \
			printf("notify %d\n", flag);                            \
			break;                                                  \
		case 'f':                                                       \
			RING_FINAL_CHECK_FOR_REQUESTS(&back, flag);             \
			printf("work %d\n", !!flag);                            \
			break;                                                  \
		default:                                                        \
			fprintf(stderr, "bad op '%c'\n", op);                   \
			exit(2);                                                \
		}                                                               \
	}                                                                       \
}

INTERPRET(small)
INTERPRET(blk)

int main(void)
{
	char kind[16];
	unsigned pages, start;
	unsigned char *page;
	size_t size;

	if (scanf("%15s %u %u", kind, &pages, &start) != 3 || pages == 0 || pages > 16)
		return 2;
	size = (size_t)pages * 4096;
	page = aligned_alloc(4096, size);
	if (!page)
		return 3;
	memset(page, 0, size);

	if (!strcmp(kind, "small"))
		run_small(page, size, start);
	else if (!strcmp(kind, "blk"))
		run_blk(page, size, start);
	else
		return 2;

	printf("page ");
	for (size_t i = 0; i < size; i++)
		printf("%02x", page[i]);
	printf("\n");
	free(page);
	return 0;
}
