/* The Xen public headers xen-sys is generated from (`cargo xtask bindgen`); the layout test compiles them too. */
#include <stdint.h>
#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/event_channel.h>
#include <xen/memory.h>
#include <xen/io/ring.h>
#include <xen/io/blkif.h>
#include <xen/io/netif.h>
#include <xen/io/vscsiif.h>
#include <xen/io/xenbus.h>
#include <xen/io/xs_wire.h>
