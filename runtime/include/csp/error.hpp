// csp/error.hpp: the exceptions of csp. Every one derives from csp::Error
// (a std::runtime_error) and its message names the channel, process or
// address it is about.
#pragma once

#include <stdexcept>
#include <string>
#include <system_error>

namespace csp {

/// Base of every csp exception.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A channel end was used after the channel was poisoned (PyCSP semantics).
struct ChannelPoisoned : Error {
  using Error::Error;
};

/// The other side of the channel has retired (every member left).
struct ChannelRetired : Error {
  using Error::Error;
};

/// Every process is blocked and nothing can wake any of them; the message
/// lists each blocked process and what it waits on.
struct Deadlock : Error {
  using Error::Error;
};

/// A cross-process connection failed: handshake mismatch, malformed frame,
/// peer gone, address unusable.
struct TransportError : Error {
  using Error::Error;
};

/// An os_process child died or threw; the message carries its status or the
/// exception's message.
struct ProcessFailed : Error {
  using Error::Error;
};

/// An operating-system call failed; carries the error code.
struct SystemError : Error {
  SystemError(std::error_code code, const std::string& what)
      : Error(what + ": " + code.message()), code_(code) {}
  [[nodiscard]] std::error_code code() const noexcept { return code_; }

 private:
  std::error_code code_;  // errno of the failed call
};

/// Throws SystemError for the current errno with `what` as context.
[[noreturn]] void throw_system_error(const std::string& what);

}  // namespace csp
