// socket_server: the seeds' socket server, as a program serving channels at
// a tcp:// address. Run it, then socket_client, with the same address:
//
//   socket_server tcp://127.0.0.1:8888/messages &
//   socket_client tcp://127.0.0.1:8888/messages
//
// (Its first line says the address it serves; with port 0 a free port is
// chosen, which is how the example test runs it.)
//
// Python (seed 000 2.4, seed 003):
//   server_socket.bind(('127.0.0.1', 8888)); server_socket.listen(1)
//   conn, addr = server_socket.accept()
//   while True:
//       data = conn.recv(1024)
//       if not data: break
//       print(data.decode())
//
// csp: Channel<std::string>::host(address) serves a channel at the address;
// the client connects to it and gets an ordinary channel. No byte stream
// to frame by hand (recv(1024) can split or merge messages; a channel
// carries whole typed values). Several channels may share a port, each
// under its own NAME.
//
// While a channel is hosted, the hosting counts as a member of both sides,
// so clients may come and go and a server's loop simply waits for the next
// one. The seed's server accepts a single connection; the same here: once
// the first message has arrived, csp::unhost stops taking new clients
// (the connection already made goes on), and when that client retires its
// writer end the writer side has retired: the range-for ends, as the
// seed's `if not data: break` does.
#include <csp/csp.hpp>
#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s tcp://HOST:PORT/NAME\n", argv[0]);
    return 2;
  }
  const std::string address = argv[1];
  auto messages = csp::Channel<std::string>::host(address);
  // With port 0 the kernel picks a free port; hosted_address() says which.
  std::printf("server: serving %s\n", csp::hosted_address(messages).c_str());
  std::fflush(stdout);

  auto in = messages.reader();
  int count = 0;
  for (const std::string& data : in) {  // until the writer side has retired
    if (count == 0) csp::unhost(csp::hosted_address(messages));  // accept() once: no more clients from now on
    std::printf("server: %s (%zu bytes)\n", data.c_str(), data.size());
    ++count;
  }
  std::printf("server: the client is gone after %d messages\n", count);
}
