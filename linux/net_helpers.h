/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C half of linux::net, our network-device layer: an Ethernet net_device with several
 * queues, one NAPI context per queue, ethtool, and the skb operations a paravirtual NIC needs.
 * The net_device_ops and ethtool_ops tables live here and call the driver through
 * `struct xpvrs_net_ops`, which the Rust side fills from its `Operations` trait. Feature
 * bits cross the boundary as `enum xpvrs_net_feature`, never as netdev_features_t bits.
 * The Rust side declares these in src/net.rs; keep the two in step.
 */
#ifndef XEN_PV_RS_NET_HELPERS_H
#define XEN_PV_RS_NET_HELPERS_H

#include <linux/types.h>

struct net_device;
struct sk_buff;
struct device;

enum xpvrs_net_feature {
	XPVRS_NETF_SG = 1 << 0,
	XPVRS_NETF_IP_CSUM = 1 << 1,
	XPVRS_NETF_IPV6_CSUM = 1 << 2,
	XPVRS_NETF_TSO = 1 << 3,
	XPVRS_NETF_TSO6 = 1 << 4,
	XPVRS_NETF_RXCSUM = 1 << 5,
};

/* rtnl_link_stats64's fields a driver fills. */
struct xpvrs_net_stats {
	u64 rx_packets;
	u64 rx_bytes;
	u64 rx_errors;
	u64 rx_dropped;
	u64 tx_packets;
	u64 tx_bytes;
	u64 tx_errors;
	u64 tx_dropped;
};

/* The driver: `drv` is the pointer given to xpvrs_net_alloc. */
struct xpvrs_net_ops {
	int (*open)(const void *drv, struct net_device *nd);
	int (*stop)(const void *drv, struct net_device *nd);
	/* Owns the skb: returns 0 (NETDEV_TX_OK) having consumed it, or 1 (NETDEV_TX_BUSY)
	 * having left it untouched with the queue stopped. */
	int (*xmit)(const void *drv, struct net_device *nd, struct sk_buff *skb, u16 queue);
	int (*poll)(const void *drv, struct net_device *nd, u16 queue, int budget);
	void (*stats)(const void *drv, struct xpvrs_net_stats *s);
	int (*change_mtu)(const void *drv, struct net_device *nd, u32 mtu);
	u32 (*fix_features)(const void *drv, u32 features);
	void (*ethtool_stats)(const void *drv, u64 *vals, u32 n);
	/* The TX queue for a packet of flow hash `hash` when `queues` (> 1) are in use. */
	u16 (*select_queue)(const void *drv, u32 hash, u16 queues);
	/* Under RTNL: the features become `features` (enum xpvrs_net_feature bits). */
	int (*set_features)(const void *drv, struct net_device *nd, u32 features);
};

struct xpvrs_net_params {
	u32 nr_queues;
	u8 mac[6];
	u32 mtu;
	u32 min_mtu;
	u32 max_mtu;
	u32 hw_features; /* enum xpvrs_net_feature, user-switchable */
	u32 features; /* enum xpvrs_net_feature, on at start */
	const char *driver; /* ethtool -i */
	const char *bus_info;
	const char *const *stat_names; /* ethtool -S */
	u32 nr_stats;
};

struct net_device *xpvrs_net_alloc(const struct xpvrs_net_ops *ops, const void *drv,
				   const struct xpvrs_net_params *p, struct device *parent);
int xpvrs_net_register(struct net_device *nd);
void xpvrs_net_clamp_mtu_locked(struct net_device *nd, u32 mtu);
void xpvrs_net_unregister(struct net_device *nd);
void xpvrs_net_free(struct net_device *nd);
const char *xpvrs_net_name(struct net_device *nd);
void xpvrs_net_carrier(struct net_device *nd, bool on);
bool xpvrs_net_running(struct net_device *nd);
void xpvrs_net_update_features(struct net_device *nd);
int xpvrs_net_set_mtu(struct net_device *nd, u32 mtu);
u32 xpvrs_net_mtu(struct net_device *nd);
u32 xpvrs_net_features(struct net_device *nd);
int xpvrs_net_set_queues(struct net_device *nd, u32 n);

/* NAPI of queue q. */
void xpvrs_napi_schedule(struct net_device *nd, u16 q);
bool xpvrs_napi_complete(struct net_device *nd, u16 q, int done);
void xpvrs_napi_gro_receive(struct net_device *nd, u16 q, struct sk_buff *skb);

/* TX queue q. */
void xpvrs_txq_stop(struct net_device *nd, u16 q);
void xpvrs_txq_wake(struct net_device *nd, u16 q);
bool xpvrs_txq_stopped(struct net_device *nd, u16 q);
void xpvrs_txq_disable_all(struct net_device *nd);
void xpvrs_txq_start_all(struct net_device *nd);
void xpvrs_txq_wake_all(struct net_device *nd);

/* A packet to send. csum: 0 none, 1 partial, 2 unnecessary; gso: 0 none, 1 TCPv4, 2 TCPv6,
 * 3 another type. */
struct xpvrs_skb_info {
	const u8 *head;
	u32 head_len;
	u32 len;
	u32 nr_frags;
	u16 gso_size;
	u8 csum;
	u8 gso;
};
void xpvrs_skb_info(struct sk_buff *skb, struct xpvrs_skb_info *i);
bool xpvrs_skb_frag(struct sk_buff *skb, u32 i, const u8 **data, u32 *len, u32 *page_offset);
int xpvrs_skb_linearize(struct sk_buff *skb);
void xpvrs_skb_consume(struct sk_buff *skb);
void xpvrs_skb_free(struct sk_buff *skb);

/* A received packet: head bytes copied in, pages attached as frags (each page's reference
 * goes to the skb), then its metadata and delivery through GRO. */
struct sk_buff *xpvrs_skb_rx_alloc(struct net_device *nd, u16 q, u32 head_len);
u8 *xpvrs_skb_put(struct sk_buff *skb, u32 len);
bool xpvrs_skb_add_page(struct sk_buff *skb, void *page_addr, u32 offset, u32 len, bool pool);
void xpvrs_skb_set_hash(struct sk_buff *skb, u32 hash, bool l4);
/* csum as above (1 partial, 2 unnecessary); gso 1 TCPv4, 2 TCPv6. Returns 0, or -errno
 * with the skb freed (a packet whose checksum cannot be set up). */
int xpvrs_skb_rx_finish(struct net_device *nd, struct sk_buff *skb, u8 csum, u8 gso,
			u16 gso_size);

/* A receive queue's page pool: order-0 pages that come back to it when the stack frees the
 * skbs they were attached to (pool_size pages cached); NULL when it cannot be made. Pages
 * it allocates fresh are zeroed; a recycled page holds what its last packet left. */
struct page_pool;
struct page_pool *xpvrs_page_pool_create(u32 pool_size);
void *xpvrs_page_pool_alloc(struct page_pool *pool, bool atomic);
void xpvrs_page_pool_put(struct page_pool *pool, void *page_addr);
void xpvrs_page_pool_destroy(struct page_pool *pool);

/* Bottom halves off on this CPU (process context taking a lock NAPI also takes). */
void xpvrs_local_bh_disable(void);
void xpvrs_local_bh_enable(void);

#endif
