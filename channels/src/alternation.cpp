// alternation.cpp: the select algorithm of csp/alternation.hpp.
#include <csp/alternation.hpp>
#include <csp/detail/settle.hpp>

#include <algorithm>
#include <array>

namespace csp::detail {
namespace {

/// Small fixed set of channels to lock, sorted by id, without duplicates.
class LockSet {
 public:
  void add(ChannelCore* c) {
    ChannelCore** end = data() + size_;
    if (std::find(data(), end, c) != end) return;
    if (size_ == inline_.size() && more_.empty()) more_.assign(inline_.begin(), inline_.end());
    if (!more_.empty()) more_.push_back(c);
    else inline_[size_] = c;
    ++size_;
  }
  void sort() {
    std::sort(data(), data() + size_, [](ChannelCore* a, ChannelCore* b) { return a->id() < b->id(); });
  }
  void lock() noexcept {
    for (std::size_t i = 0; i < size_; ++i) data()[i]->lock();
  }
  void unlock() noexcept {
    for (std::size_t i = size_; i-- > 0;) data()[i]->unlock();
  }

 private:
  ChannelCore** data() noexcept { return more_.empty() ? inline_.data() : more_.data(); }
  // Selects rarely have more than a handful of channels: those need no
  // allocation (the message path of a select allocates nothing).
  std::array<ChannelCore*, 16> inline_{};
  std::vector<ChannelCore*> more_;  // used instead past 16 channels
  std::size_t size_ = 0;
};

Selected fire(Guard* g, std::size_t index) {
  Selected s;
  s.index = index;
  g->fire(s);
  return s;
}

[[noreturn]] void throw_all_retired(Guard* const* guards, std::size_t n) {
  std::string names;
  for (std::size_t i = 0; i < n; ++i)
    if (ChannelCore* c = guards[i]->channel()) names += (names.empty() ? "'" : ", '") + c->name() + "'";
  throw ChannelRetired("csp: select: every guard channel has retired (" + names + ")");
}

/// Select over channels some of which cannot be locked from here: poll.
Selected select_polling(Guard* const* guards, std::size_t n, std::size_t start, Deadline deadline,
                        Guard* timeout_guard, std::size_t timeout_index) {
  auto backoff = std::chrono::microseconds(20);
  for (;;) {
    bool all_retired = true;
    bool any_channel = false;
    Guard* skip = nullptr;
    std::size_t skip_index = 0;
    for (std::size_t k = 0; k < n; ++k) {
      std::size_t i = (start + k) % n;
      Guard* g = guards[i];
      if (!g->enabled_) continue;
      if (g->kind_ == Guard::Kind::skip) {
        if (!skip) skip = g, skip_index = i;
        continue;
      }
      if (!g->channel()) continue;
      any_channel = true;
      switch (g->try_now()) {
        case Poll::ready:
          return fire(g, i);
        case Poll::poisoned:
          g->channel()->throw_poisoned();
        case Poll::retired:
          break;
        case Poll::not_ready:
          all_retired = false;
          break;
      }
    }
    if (any_channel && all_retired) throw_all_retired(guards, n);
    if (skip) return fire(skip, skip_index);
    auto now = Clock::now();
    if (timeout_guard && now >= deadline) return fire(timeout_guard, timeout_index);
    auto nap = std::chrono::duration_cast<Clock::duration>(backoff);
    if (deadline != forever) nap = std::min(nap, deadline - now);
    csp::sleep_for(nap);
    backoff = std::min(backoff * 2, std::chrono::microseconds(2000));
  }
}

}  // namespace

Selected select(Guard* const* guards, std::size_t n, std::size_t start) {
  if (n == 0) throw Error("csp: select with no guards");
  settle_writes();  // a select is observable: pipelined writes land first
  // Deadline of the earliest enabled timeout guard, and whether every
  // channel can be locked from here.
  Deadline deadline = forever;
  Guard* timeout_guard = nullptr;
  std::size_t timeout_index = 0;
  bool lockable = true;
  bool any_enabled = false;
  LockSet locks;
  auto now = Clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    Guard* g = guards[i];
    if (!g->enabled_) continue;
    any_enabled = true;
    g->prepare();
    if (g->kind_ == Guard::Kind::timeout) {
      Deadline d = deadline_after(g->timeout_);
      (void)now;
      if (!timeout_guard || d < deadline) deadline = d, timeout_guard = g, timeout_index = i;
    } else if (ChannelCore* c = g->channel()) {
      if (c->lockable()) locks.add(c);
      else lockable = false;
    }
  }
  if (!any_enabled) throw Error("csp: select: every guard is disabled (when(false)), nothing can fire");
  if (!lockable) return select_polling(guards, n, start, deadline, timeout_guard, timeout_index);
  locks.sort();

  for (;;) {
    locks.lock();
    bool all_retired = true;
    bool any_channel = false;
    Guard* skip = nullptr;
    std::size_t skip_index = 0;
    for (std::size_t k = 0; k < n; ++k) {
      std::size_t i = (start + k) % n;
      Guard* g = guards[i];
      if (!g->enabled_) continue;
      if (g->kind_ == Guard::Kind::skip) {
        if (!skip) skip = g, skip_index = i;
        continue;
      }
      if (!g->channel()) continue;
      any_channel = true;
      Waiter* wake = nullptr;
      switch (g->poll_locked(wake)) {
        case Poll::ready:
          locks.unlock();
          if (wake) wake->wake();
          return fire(g, i);
        case Poll::poisoned:
          locks.unlock();
          g->channel()->throw_poisoned();
        case Poll::retired:
          break;
        case Poll::not_ready:
          all_retired = false;
          break;
      }
    }
    if (any_channel && all_retired) {
      locks.unlock();
      throw_all_retired(guards, n);
    }
    if (skip) {
      locks.unlock();
      return fire(skip, skip_index);
    }
    if (timeout_guard && deadline <= Clock::now()) {
      locks.unlock();
      return fire(timeout_guard, timeout_index);
    }
    // Nothing ready: one op per channel guard, all on one waiter.
    std::string_view first_name;
    for (std::size_t i = 0; i < n; ++i)
      if (guards[i]->enabled_ && guards[i]->channel()) {
        first_name = guards[i]->channel()->name();
        break;
      }
    Waiter w("select", first_name);
    for (std::size_t i = 0; i < n; ++i) {
      Guard* g = guards[i];
      if (g->enabled_ && g->channel()) g->enqueue_locked(w, kFirstGuard + i);
    }
    locks.unlock();
    std::uintptr_t token = wait(w, deadline);
    locks.lock();
    for (std::size_t i = 0; i < n; ++i) {
      Guard* g = guards[i];
      if (g->enabled_ && g->channel()) g->unlink_locked();
    }
    locks.unlock();
    if (token >= kFirstGuard) return fire(guards[token - kFirstGuard], token - kFirstGuard);
    if (token == kTimedOut) return fire(timeout_guard, timeout_index);
    if (token == kDeadlock) ChannelCore::throw_deadlock();
    // kPoisoned / kRetired: a channel changed state; poll again.
  }
}

std::size_t random_start(std::size_t n) noexcept {
  thread_local std::uint64_t state = 0x9E3779B97F4A7C15ull ^ reinterpret_cast<std::uintptr_t>(&state);
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return n ? static_cast<std::size_t>(state % n) : 0;
}

Selected fair_select(Guard* const* guards, std::size_t n) {
  // The rotation is kept per set of channels (a stand-in for "per call
  // site"): a small table indexed by a hash of the guards' channel ids.
  static std::array<std::atomic<std::uint32_t>, 1024> next_start{};
  std::uint64_t h = 1469598103934665603ull;
  for (std::size_t i = 0; i < n; ++i) {
    ChannelCore* c = guards[i]->channel();
    h = (h ^ (c ? c->id() : 0x100 + static_cast<unsigned>(guards[i]->kind_))) * 1099511628211ull;
  }
  auto& slot = next_start[h % next_start.size()];
  std::size_t start = slot.load(std::memory_order_relaxed) % n;
  Selected s = select(guards, n, start);
  slot.store(static_cast<std::uint32_t>((s.index + 1) % n), std::memory_order_relaxed);
  return s;
}

}  // namespace csp::detail
