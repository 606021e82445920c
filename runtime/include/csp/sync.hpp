// csp/sync.hpp: every synchronisation primitive and shared-memory type of
// DESIGN.md §5 in one include.
//
//   csp::Barrier b{3};        b.sync(); b.enroll(); b.resign();
//   csp::Event e;             e.set(); e.wait(); e.clear(); e.is_set();
//   csp::Semaphore s{1};      s.acquire(); s.release(); s.try_acquire();
//   csp::Mutex m;             m.lock(); m.unlock(); std::lock_guard works
//   csp::Semaphore xs{1, csp::interprocess};   // shared with os_process children
//   csp::SharedValue<long> counter{0};         // fetch_add, load, store, compare_exchange
//   csp::SharedArray<double> a(1024);          // a[i], a.size(), begin()/end()
//
// Each is a cheap shared handle (copies refer to the same primitive), so it
// can be passed to processes as an argument. Waiting parks the process,
// never its worker. Prefer channels: these are for the cases the seeds
// use them for (a shared counter, a start signal, a bounded resource).
#pragma once

#include <csp/barrier.hpp>
#include <csp/event.hpp>
#include <csp/interprocess.hpp>
#include <csp/mutex.hpp>
#include <csp/semaphore.hpp>
#include <csp/shared_value.hpp>
