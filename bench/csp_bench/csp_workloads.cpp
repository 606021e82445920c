// csp_workloads.cpp: the csp side of csp-bench. Built with the csp library
// only when bench/CMakeLists.txt finds it (CSP_BENCH_HAVE_CSP=1); otherwise
// csp-bench runs the floors alone and says so in a note.
#include "registry.hpp"

#ifndef CSP_BENCH_HAVE_CSP
#define CSP_BENCH_HAVE_CSP 0
#endif

namespace cspbench {

void register_csp_workloads(Registry& reg) {
#if CSP_BENCH_HAVE_CSP
  (void)reg;
#else
  reg.note("built without the csp library: floors only (csp workloads need csp::csp at configure time)");
#endif
}

}  // namespace cspbench
