// error.cpp: out-of-line helpers of csp/error.hpp.
#include <csp/error.hpp>

#include <cerrno>

namespace csp {

void throw_system_error(const std::string& what) {
  throw SystemError(std::error_code(errno, std::generic_category()), what);
}

}  // namespace csp
