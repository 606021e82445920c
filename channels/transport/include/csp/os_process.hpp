// csp/os_process.hpp: csp::os_process(f, args...), a process that runs in a
// child OS process (PyCSP's @multiprocess).
//
//   csp::Channel<int> ch;
//   csp::Parallel(csp::os_process(producer, ch.writer()),   // in a child process
//                 csp::process(consumer, ch.reader()));     // here
//
// - The child is forked when the process starts, so f and its arguments
//   need no serialisation. Channel ends among the arguments (Reader,
//   Writer, std::vectors of them; also whole Channel handles) are connected
//   to their channel in the parent, which stays the channel's home: every
//   semantic of a channel holds across the boundary (any-to-any,
//   rendezvous, buffering, poison, retire, timeouts, alternation). Ends
//   reached any other way (captured by f, globals) are NOT connected: in the
//   child they refer to a copy of the parent's memory.
// - Transport of each argument channel: the channel's own
//   (csp::Channel<T> ch{csp::transport::pipe}), else CSP_TRANSPORT
//   (shm|pipe|socket|unix|tcp), else shm. Element types must be codable
//   (csp/codec.hpp); so must the result type R.
// - The child runs f on the forking thread's context (a plain thread as far
//   as the runtime is concerned: it starts its own workers if f runs
//   processes). When f is done its arguments are destroyed (RAII retire, as
//   for any process), the child's runtime is shut down, each connection is
//   closed, and the child reports to the parent and _exit()s (atexit
//   handlers and static destructors of the parent's program do not run).
// - Poison and retire propagate as for csp::process, in the child and then
//   in the parent. Any other exception, a non-zero exit or a signal makes
//   the process fail with csp::ProcessFailed naming it, its pid and the
//   exception's type and message or the exit status; Parallel rethrows it.
// - A child that dies abnormally poisons the channels it was connected to,
//   naming it, its pid and the transport; a child dies with its parent
//   (PR_SET_PDEATHSIG) and sees a lost parent as poison.
#pragma once

#include <concepts>
#include <exception>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <csp/channel.hpp>
#include <csp/codec.hpp>
#include <csp/detail/frame.hpp>
#include <csp/error.hpp>
#include <csp/process.hpp>
#include <csp/runtime.hpp>
#include <csp/transport/address.hpp>
#include <csp/transport/fd_stream.hpp>
#include <csp/transport/fork.hpp>
#include <csp/transport/remote_channel.hpp>
#include <csp/transport/server.hpp>

namespace csp {

namespace transport_detail {

/// One channel (or channel end) among an os_process's arguments.
class ArgLink {
 public:
  virtual ~ArgLink() { release_lend_word(lend_word); }
  /// What two arguments share if they are the same end (or channel).
  [[nodiscard]] virtual const void* identity() const noexcept = 0;
  [[nodiscard]] virtual csp::transport preferred() const noexcept = 0;
  /// Child: reconnects the argument to its home over `stream`.
  virtual std::shared_ptr<ClientCore> bind_child(std::unique_ptr<ByteStream> stream) = 0;
  /// Parent: serves the child's requests until it closes the link.
  virtual void serve(const std::string& peer) = 0;
  /// Parent: the child vanished.
  virtual void poison(const std::string& reason) noexcept = 0;

  std::unique_ptr<ForkLink> link;            // made before fork
  std::unique_ptr<ByteStream> parent_stream;  // parent: its end after fork
  std::atomic<std::uint64_t>* lend_word = nullptr;  // made before fork: read-ahead (wire.hpp), or null
};

/// Keeps objects of the parent's program state alive in a child: their
/// destructors (a RemoteChannel closing its connection, say) would act on
/// connections that are not the child's.
void keep_in_child(std::shared_ptr<const void> object);

template <class T>
void send_fork_hello(ClientCore& core, const std::string& name) {
  const csp::detail::Hello hello = csp::detail::make_hello<T>(name);
  core.send([&](OutFrame& f, std::uint32_t seq) {
    const std::size_t start = csp::detail::begin_frame(f.head, FrameKind::hello, 0, seq, kHelloNoAck);
    csp::detail::encode_hello(f.head, hello);
    csp::detail::end_frame(f.head, start, 0xFFFFFFFFu);
  });
}

template <class T>
std::shared_ptr<ClientCore> connect_child(std::unique_ptr<ByteStream> stream, const std::string& name) {
  std::string peer = stream->describe();
  auto core = std::make_shared<ClientCore>(std::move(stream), std::move(peer), max_frame_payload(true));
  send_fork_hello<T>(*core, name);
  return core;
}

template <class T>
typename ChannelServer<T>::Options child_server_options(const std::string& peer, std::atomic<std::uint64_t>* lend_word) {
  return {peer, "os_process link", max_frame_payload(true), false, lend_word};
}

/// A Reader or Writer argument.
template <class T>
class EndLink final : public ArgLink {
 public:
  explicit EndLink(std::shared_ptr<csp::detail::EndState<T>> end) : end_(std::move(end)) {}
  const void* identity() const noexcept override { return end_.get(); }
  csp::transport preferred() const noexcept override { return end_->impl().preferred_transport(); }
  std::shared_ptr<ClientCore> bind_child(std::unique_ptr<ByteStream> stream) override {
    const std::string name = end_->impl().name();
    auto core = connect_child<T>(std::move(stream), name);
    std::array<std::size_t, 2> members{0, 0};
    if (!end_->retired()) members[end_->side() == csp::detail::Side::reader ? 0 : 1] = 1;
    auto remote = std::make_shared<RemoteChannel<T>>(name, core, members, lend_word);
    remote->set_preferred_transport(end_->impl().preferred_transport());
    keep_in_child(end_->channel());
    end_->rebind(std::move(remote));
    end_.reset();
    return core;
  }
  void serve(const std::string& peer) override {
    ChannelServer<T> server(end_->channel(), std::move(parent_stream), child_server_options<T>(peer, lend_word));
    if (!end_->retired()) server.adopt(end_);
    server.serve();
  }
  void poison(const std::string& reason) noexcept override {
    try {
      poison_with_reason(end_->impl(), reason);
    } catch (...) {
    }
  }

 private:
  std::shared_ptr<csp::detail::EndState<T>> end_;  // the argument's end (shared with its copies)
};

/// A whole Channel<T> argument: the child makes its own ends of it.
template <class T>
class ChannelLink final : public ArgLink {
 public:
  explicit ChannelLink(Channel<T>& channel) : channel_(&channel), impl_(channel.impl()) {}
  const void* identity() const noexcept override { return impl_.get(); }
  csp::transport preferred() const noexcept override { return impl_->preferred_transport(); }
  std::shared_ptr<ClientCore> bind_child(std::unique_ptr<ByteStream> stream) override {
    const std::string name = impl_->name();
    auto core = connect_child<T>(std::move(stream), name);
    auto remote = std::make_shared<RemoteChannel<T>>(name, core, std::array<std::size_t, 2>{0, 0}, lend_word);
    remote->set_preferred_transport(impl_->preferred_transport());
    keep_in_child(impl_);
    *channel_ = Channel<T>(std::shared_ptr<csp::detail::ChannelImpl<T>>(std::move(remote)));
    impl_.reset();
    return core;
  }
  void serve(const std::string& peer) override {
    ChannelServer<T> server(impl_, std::move(parent_stream), child_server_options<T>(peer, lend_word));
    server.serve();
  }
  void poison(const std::string& reason) noexcept override {
    try {
      poison_with_reason(*impl_, reason);
    } catch (...) {
    }
  }

 private:
  Channel<T>* channel_;                                // the argument (in the bound tuple)
  std::shared_ptr<csp::detail::ChannelImpl<T>> impl_;  // its home channel
};

/// The channel arguments of one os_process, without duplicates.
class LinkCollector {
 public:
  template <class T>
  void add_end(const std::shared_ptr<csp::detail::EndState<T>>& end) {
    if (end && !seen(end.get())) links_.push_back(std::make_unique<EndLink<T>>(end));
  }
  template <class T>
  void add_channel(Channel<T>& channel) {
    if (channel.impl() && !seen(channel.impl().get())) links_.push_back(std::make_unique<ChannelLink<T>>(channel));
  }
  std::vector<std::unique_ptr<ArgLink>>& links() noexcept { return links_; }

 private:
  bool seen(const void* identity) const noexcept {
    for (const auto& l : links_)
      if (l->identity() == identity) return true;
    return false;
  }
  std::vector<std::unique_ptr<ArgLink>> links_;
};

template <class A>
void link_arg(A& a, LinkCollector& links) {
  if constexpr (requires { csp_os_link(a, links); }) {
    csp_os_link(a, links);
  } else if constexpr (requires { a.begin(); a.end(); } && !std::is_same_v<A, std::string>) {
    for (auto& e : a) link_arg(e, links);
  }
}

template <class R, class F, class... Args>
class OsProcessBody final : public csp::detail::TypedBody<R> {
 public:
  template <class F2, class... A2>
  explicit OsProcessBody(F2&& f, A2&&... args) : bound_(std::in_place, std::forward<F2>(f), std::forward<A2>(args)...) {}

  std::exception_ptr run() noexcept override {
    if (csp::detail::network_recording()) [[unlikely]]
      record_network();  // CSP_TRACE (csp/trace.hpp)
    std::exception_ptr error;
    ChildOutcome outcome = ChildOutcome::returned;
    try {
      outcome = run_parent();
    } catch (...) {
      error = std::current_exception();
      outcome = ChildOutcome::exception;
    }
    try {
      if (outcome == ChildOutcome::retired) for_each_arg([](auto& a) { csp::detail::retire_arg(a); });
      else if (outcome != ChildOutcome::returned) for_each_arg([](auto& a) { csp::detail::poison_arg(a); });
    } catch (...) {
    }
    bound_.reset();  // RAII retire: ends held by the process leave now
    return error;
  }

  std::unique_ptr<csp::detail::TypedBody<R>> fresh_copy() const override {
    auto copy = std::apply(
        [](const auto& f, const auto&... args) { return std::make_unique<OsProcessBody>(f, csp::detail::fresh_arg(args)...); },
        *bound_);
    copy->name_ = this->name_;
    return copy;
  }

 private:
  template <class Fn>
  void for_each_arg(Fn fn) {
    std::apply([&](auto&, auto&... args) { (fn(args), ...); }, *bound_);
  }

  void record_network() noexcept {
    try {
      std::vector<csp::detail::EndInfo> ends;
      for_each_arg([&](auto& a) { csp::detail::describe_arg(a, ends); });
      csp::detail::record_process(this->name_, "os_process", std::move(ends));
    } catch (...) {
      // out of memory: the network misses this process, the program runs on
    }
  }

  ChildOutcome run_parent() {
    LinkCollector collector;
    std::apply([&](auto&, auto&... args) { (link_arg(args, collector), ...); }, *bound_);
    auto& links = collector.links();
    for (auto& l : links) {
      l->link = make_fork_link(link_kind_for(l->preferred()));
      l->lend_word = acquire_lend_word();  // shared with the child: made before the fork
    }

    ForkedChild child;
    if (fork_child(child) == 0) run_child(links, child);  // does not return

    const std::string who = "os_process '" + this->name_ + "' (pid " + std::to_string(child.pid) + ")";
    for (auto& l : links) l->parent_stream = l->link->parent_end();
    csp::detail::Latch servers(links.size());
    for (std::size_t i = 0; i < links.size(); ++i) {
      ArgLink* l = links[i].get();
      std::string peer = who + " over " + l->parent_stream->describe();
      start_coroutine(who + " link " + std::to_string(i), [l, peer] { l->serve(peer); }, &servers);
    }
    ChildStatus status;
    try {
      status = wait_child(child);
    } catch (...) {
      servers.wait();
      throw;
    }
    const bool reported = !status.record.empty();
    if (!status.exited || (!reported && status.code != 0)) {
      const std::string reason = "csp: " + who + " " + describe_exit(status);
      for (auto& l : links) l->poison(reason);
    }
    servers.wait();
    if (!reported) {
      if (status.exited && status.code == 0) return ChildOutcome::returned;
      throw ProcessFailed("csp: " + who + " " + describe_exit(status));
    }
    ByteReader in(status.record);
    const auto outcome = static_cast<ChildOutcome>(in.get_u8());
    switch (outcome) {
      case ChildOutcome::returned:
        if constexpr (!std::is_void_v<R>) {
          R value = csp::decode<R>(in);
          if (this->result_) this->result_->emplace(std::move(value));
        }
        return outcome;
      case ChildOutcome::poisoned:
      case ChildOutcome::retired:
        return outcome;
      case ChildOutcome::exception: {
        std::string type = csp::decode<std::string>(in);
        std::string message = csp::decode<std::string>(in);
        throw ProcessFailed("csp: " + who + " failed: " + type + ": " + message);
      }
    }
    throw ProcessFailed("csp: " + who + " sent an unreadable status");
  }

  [[noreturn]] void run_child(std::vector<std::unique_ptr<ArgLink>>& links, const ForkedChild& child) noexcept {
    ByteWriter record;
    std::vector<std::shared_ptr<ClientCore>> cores;
    try {
      std::vector<int> keep;
      for (auto& l : links) {
        auto stream = l->link->child_end();
        for (int fd : stream->fds()) keep.push_back(fd);
        cores.push_back(l->bind_child(std::move(stream)));
      }
      links.clear();  // the links' references to argument ends go before the arguments do
      child_keep_only(std::move(keep), child);
    } catch (...) {
      record.clear();
      record.put_u8(static_cast<std::uint8_t>(ChildOutcome::exception));
      csp::encode(record, current_exception_type());
      csp::encode(record, std::string("setting up the child's channels: ") + what());
      child_exit(child, record, 1);
    }
    int code = 0;
    try {
      if constexpr (std::is_void_v<R>) {
        std::apply([](auto& f, auto&... args) { std::invoke(f, args...); }, *bound_);
        record.put_u8(static_cast<std::uint8_t>(ChildOutcome::returned));
      } else {
        R value = std::apply([](auto& f, auto&... args) -> R { return std::invoke(f, args...); }, *bound_);
        record.put_u8(static_cast<std::uint8_t>(ChildOutcome::returned));
        csp::encode(record, value);
      }
    } catch (const ChannelPoisoned&) {
      record.clear();
      record.put_u8(static_cast<std::uint8_t>(ChildOutcome::poisoned));
      try {
        for_each_arg([](auto& a) { csp::detail::poison_arg(a); });
      } catch (...) {
      }
    } catch (const ChannelRetired&) {
      record.clear();
      record.put_u8(static_cast<std::uint8_t>(ChildOutcome::retired));
      try {
        for_each_arg([](auto& a) { csp::detail::retire_arg(a); });
      } catch (...) {
      }
    } catch (...) {
      code = 1;
      record.clear();
      record.put_u8(static_cast<std::uint8_t>(ChildOutcome::exception));
      try {
        csp::encode(record, current_exception_type());
        csp::encode(record, what());
      } catch (...) {
      }
      try {
        for_each_arg([](auto& a) { csp::detail::poison_arg(a); });
      } catch (...) {
      }
    }
    try {
      bound_.reset();  // RAII retire in the child
      csp::shutdown();  // joins what f spawned, if it started a runtime here
    } catch (...) {
    }
    for (auto& core : cores) core->close();
    child_exit(child, record, code);
  }

  static std::string what() {
    try {
      throw;
    } catch (const std::exception& e) {
      return e.what();
    } catch (...) {
      return "(not a std::exception)";
    }
  }

  std::optional<std::tuple<F, Args...>> bound_;  // callable and arguments, until finished
};

}  // namespace transport_detail

// Hooks for os_process (found by argument-dependent lookup).
template <class T>
void csp_os_link(Reader<T>& r, transport_detail::LinkCollector& links) {
  if (r) links.add_end<T>(r.end_state());
}
template <class T>
void csp_os_link(Writer<T>& w, transport_detail::LinkCollector& links) {
  if (w) links.add_end<T>(w.end_state());
}
template <class T>
void csp_os_link(Channel<T>& ch, transport_detail::LinkCollector& links) {
  links.add_channel<T>(ch);
}

/// A process running f(args...) in a child OS process; see the file comment.
template <class F, class... Args>
  requires std::invocable<std::decay_t<F>&, std::decay_t<Args>&...>
auto os_process(F&& f, Args&&... args) {
  using R = csp::detail::process_result_t<F, Args...>;
  static_assert(std::is_void_v<R> || Codable<R>,
                "csp::os_process: the result type must be codable (csp/codec.hpp) to come back from the child");
  auto body = std::make_unique<transport_detail::OsProcessBody<R, std::decay_t<F>, std::decay_t<Args>...>>(
      std::forward<F>(f), std::forward<Args>(args)...);
  body->name_ = "os_process-" + std::to_string(csp::detail::next_process_id());
  return Process<R>(std::move(body), csp::detail::Placement::coroutine);
}

}  // namespace csp
