#include "shim.h"

int sy_rte_errno(void) { return rte_errno; }
