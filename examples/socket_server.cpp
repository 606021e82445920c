// socket_server: the seeds' socket server, as a program serving channels at
// a tcp:// address. Run it, then socket_client, with the same address:
//
//   socket_server tcp://127.0.0.1:8888/messages &
//   socket_client tcp://127.0.0.1:8888/messages
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
// carries whole typed values), and "the client has gone" is the writer
// side retiring, which ends the range-for. A second channel on the same
// port (another NAME after the port) carries replies back.
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
  auto replies = csp::Channel<std::string>::host(address + "-replies");
  std::printf("server: serving %s\n", address.c_str());
  std::fflush(stdout);

  auto in = messages.reader();
  auto out = replies.writer();
  int count = 0;
  for (const std::string& data : in) {  // until every client has retired
    std::printf("server: %s\n", data.c_str());
    out.write("got " + std::to_string(data.size()) + " bytes");
    ++count;
  }
  std::printf("server: the client is gone after %d messages\n", count);
}
