// socket_client: the seeds' socket client; see socket_server.cpp.
//
// Python:
//   client_socket.connect(('127.0.0.1', 8888))
//   client_socket.sendall(b'Hello, server')
//   client_socket.close()
//
// csp: Channel<std::string>::connect(address) joins the channel the server
// hosts (retrying until it is there, 5 s by default). Writing is sendall;
// leaving (retiring the writer, or just returning) is close.
#include <csp/csp.hpp>
#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s tcp://HOST:PORT/NAME\n", argv[0]);
    return 2;
  }
  const std::string address = argv[1];
  auto messages = csp::Channel<std::string>::connect(address);
  auto out = messages.writer();
  for (std::string text : {"Hello, server", "Hello again", "Goodbye"}) {
    out.write(text);  // returns once the server has taken it (a rendezvous)
    std::printf("client: sent '%s'\n", text.c_str());
  }
  out.retire();  // client_socket.close(): the server's loop ends
}
