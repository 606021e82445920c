// settle.cpp: where each context keeps its unsettled pipelined writes (see
// csp/detail/settle.hpp): a coroutine in its Task, a thread in a
// thread_local. Only the owning context reads or writes its record, so the
// steady state of a stream (note_unsettled on the same channel, settle
// checks that keep it) takes no lock and no atomic read-modify-write.
#include <csp/detail/settle.hpp>

#include <utility>

#include "scheduler.hpp"

namespace csp::detail {

std::atomic<std::size_t> g_unsettled_contexts{0};

namespace {

/// The calling context's record, without starting the runtime: a thread
/// that never blocked has no parker (an os_process child's main thread runs
/// without workers, and must not start them just to be told apart).
UnsettledWrites& current_unsettled() noexcept {
  if (Task* t = current_task()) return t->unsettled_;
  thread_local UnsettledWrites mine;
  return mine;
}

}  // namespace

void settle_writes_slow(const Settleable* keep) {
  UnsettledWrites& mine = current_unsettled();
  if (!mine.on || mine.on.get() == keep) return;
  std::shared_ptr<Settleable> on = std::move(mine.on);  // leaves mine.on empty
  g_unsettled_contexts.fetch_sub(1, std::memory_order_relaxed);
  on->settle(mine.ticket);
}

void note_unsettled(const std::shared_ptr<Settleable>& on, std::uint64_t ticket) {
  UnsettledWrites& mine = current_unsettled();
  if (!mine.on) {
    mine.on = on;
    g_unsettled_contexts.fetch_add(1, std::memory_order_relaxed);
  }
  // else the same channel: settle_writes(on) kept it
  mine.ticket = ticket;
}

}  // namespace csp::detail
