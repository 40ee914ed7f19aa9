/* Everything bindgen should see, plus the few shims for what it cannot reach:
 * macros and per-lcore (thread-local) variables. Static-inline functions are
 * reached through bindgen's generated wrappers (wrap_static_fns), not here. */
#include <rte_common.h>
#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_dev.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_ether.h>

/* rte_errno is a per-lcore thread-local; bindgen cannot bind it. */
int sy_rte_errno(void);
