/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C half of linux::timer: a periodic timer calling fn(arg) every period, or a one-shot
 * one calling it once per arm, in softirq context (fn must not sleep). The Rust side (src/timer.rs) declares these itself.
 */
#ifndef XEN_PV_RS_TIMER_HELPERS_H
#define XEN_PV_RS_TIMER_HELPERS_H

struct xpvrs_ticker;
struct xpvrs_ticker *xpvrs_ticker_start(unsigned int period_ms, void (*fn)(const void *arg),
					const void *arg);
struct xpvrs_ticker *xpvrs_oneshot_new(void (*fn)(const void *arg), const void *arg);
void xpvrs_oneshot_arm(struct xpvrs_ticker *ticker, unsigned int ms);
void xpvrs_ticker_stop(struct xpvrs_ticker *ticker);

#endif
