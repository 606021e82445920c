// settle.cpp: the registry of contexts with pipelined writes (see
// csp/detail/settle.hpp). Entries are few (one per context that is
// streaming into a remote buffered channel right now), so a vector under a
// spin lock does.
#include <csp/detail/settle.hpp>

#include <algorithm>
#include <mutex>
#include <utility>
#include <vector>

#include <csp/detail/spin_lock.hpp>
#include <csp/detail/wait.hpp>

namespace csp::detail {

std::atomic<std::size_t> g_unsettled_contexts{0};

namespace {

struct Entry {
  const void* context;  // a coroutine's parker, or a thread's tag
  std::shared_ptr<Settleable> on;  // keeps the connection alive until settled
  std::uint64_t ticket;
};

struct Registry {
  SpinLock lock;  // guards entries and the count's changes
  std::vector<Entry> entries;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: used until the last thread ends
  return *r;
}

/// The calling context, without starting the runtime: a thread that never
/// blocked has no parker yet (an os_process child's main thread runs
/// without workers, and must not start them just to be told apart).
const void* current_context() noexcept {
  if (in_coroutine()) return current_parker();
  thread_local const char tag = 0;
  return &tag;
}

}  // namespace

void settle_writes_slow(const Settleable* keep) {
  const void* self = current_context();
  Registry& r = registry();
  Entry mine{nullptr, nullptr, 0};
  {
    std::lock_guard guard(r.lock);
    auto it = std::find_if(r.entries.begin(), r.entries.end(), [&](const Entry& e) { return e.context == self; });
    if (it == r.entries.end() || it->on.get() == keep) return;
    mine = std::move(*it);
    *it = std::move(r.entries.back());
    r.entries.pop_back();
    g_unsettled_contexts.store(r.entries.size(), std::memory_order_relaxed);
  }
  mine.on->settle(mine.ticket);
}

void note_unsettled(std::shared_ptr<Settleable> on, std::uint64_t ticket) {
  const void* self = current_context();
  Registry& r = registry();
  std::lock_guard guard(r.lock);
  auto it = std::find_if(r.entries.begin(), r.entries.end(), [&](const Entry& e) { return e.context == self; });
  if (it != r.entries.end()) {
    it->on = std::move(on);  // the same channel: settle_writes(on) kept it
    it->ticket = ticket;
    return;
  }
  r.entries.push_back(Entry{self, std::move(on), ticket});
  g_unsettled_contexts.store(r.entries.size(), std::memory_order_relaxed);
}

}  // namespace csp::detail
