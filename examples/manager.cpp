// manager: the seeds' multiprocessing.Manager (dict, list, Namespace), as a
// server process that owns the data and answers requests over channels.
//
// Python (seed 001, seed 002):
//   d = Manager().dict();       Process(func, (i, d)): d[i] = i + 100; print(d.values())
//   records = manager.list([...]); p1 appends a record; p2 prints them all
//   ns = manager.Namespace(); ns.x = 1; ns.y = 1; child: ns.x += 5; ns.y *= 10
//
// A Manager is a server process holding the objects; the proxies send it
// requests. That is CSP already, so here it is written as such: the
// manager is an os_process that owns a std::map, a std::vector and a
// Namespace struct and serves typed requests from one any-to-any channel,
// replying on each client's own reply channel. Clients are os_processes
// too. Two things become explicit that proxies hide:
// - every access is a message round trip (d[i] = v is one request);
// - `ns.x += 5` through a proxy is a get and a set, two requests, so two
//   clients can interleave them and lose an update. Here the manager
//   offers "add to x" as one request, so it happens in one step.
// The seed runs its clients one after another (start(); join() in the
// loop), and so does this (Sequence), which makes the output repeatable.
#include <csp/csp.hpp>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

// Requests (all codable: trivially copyable structs, or std types).
struct DictSet { int key, value; };
struct DictValues {};
using ListAppend = std::pair<std::string, int>;  // (subject, score)
struct ListItems {};
struct NsAdd { char field; long delta; };        // ns.<field> += delta, in one step
struct NsMul { char field; long factor; };       // ns.<field> *= factor
struct NsGet {};
using Op = std::variant<DictSet, DictValues, ListAppend, ListItems, NsAdd, NsMul, NsGet>;
using Request = std::pair<int, Op>;  // (client, operation)

// Every reply is a list of (name, number) pairs: the dict's values (names
// empty), the list's records, the namespace's fields; empty for "done".
using Reply = std::vector<std::pair<std::string, long>>;

template <class... F>
struct Overload : F... {
  using F::operator()...;
};

// The manager: owns the objects; nobody else can touch them.
void manager(csp::Reader<Request> requests, std::vector<csp::Writer<Reply>> replies) {
  std::map<int, int> dict;
  std::vector<std::pair<std::string, int>> list{{"Computers", 1}, {"History", 5}, {"Hindi", 9}};
  struct { long x = 0, y = 0; } ns;
  for (auto [client, op] : requests) {  // until every client has left
    Reply reply = std::visit(
        Overload{[&](DictSet s) -> Reply { dict[s.key] = s.value; return {}; },
                 [&](DictValues) -> Reply {
                   Reply values;
                   for (auto& [k, v] : dict) values.emplace_back("", v);
                   return values;
                 },
                 [&](const ListAppend& r) -> Reply { list.push_back(r); return {}; },
                 [&](ListItems) -> Reply { return Reply(list.begin(), list.end()); },
                 [&](NsAdd a) -> Reply { (a.field == 'x' ? ns.x : ns.y) += a.delta; return {}; },
                 [&](NsMul m) -> Reply { (m.field == 'x' ? ns.x : ns.y) *= m.factor; return {}; },
                 [&](NsGet) -> Reply { return {{"x", ns.x}, {"y", ns.y}}; }},
        op);
    replies.at(client).write(reply);
  }
}

// A client's proxy: one request, one reply.
struct Proxy {
  int id;
  csp::Writer<Request> requests;
  csp::Reader<Reply> replies;
  Reply call(Op op) {
    requests.write({id, std::move(op)});
    return replies.read();
  }
};

void print_values(const Reply& values) {
  std::printf("[");
  for (std::size_t i = 0; i < values.size(); ++i) std::printf("%s%ld", i ? ", " : "", values[i].second);
  std::printf("]\n");
  std::fflush(stdout);
}

int main() {
  constexpr int kClients = 8;  // 5 dict writers, 2 list users, 1 namespace user; + main
  csp::Channel<Request> requests{"manager requests"};
  std::vector<csp::Channel<Reply>> reply_channels(kClients + 1);
  std::vector<csp::Writer<Reply>> reply_writers;
  for (auto& c : reply_channels) reply_writers.push_back(c.writer());

  // Each client is an os_process given its own ends (so they are connected
  // across the fork).
  auto client = [&](int id, auto body) {
    return csp::os_process(
        [id, body](csp::Writer<Request> w, csp::Reader<Reply> r) mutable { body(Proxy{id, w, r}); },
        requests.writer(), reply_channels[id].reader());
  };

  Proxy main_proxy{kClients, requests.writer(), reply_channels[kClients].reader()};
  csp::Parallel(
      csp::os_process(manager, requests.reader(), reply_writers).named("manager"),
      [&] {
        std::puts("-- Manager().dict(): process i sets d[i] = i + 100 and prints d.values() --");
        std::fflush(stdout);
        for (int i = 0; i < 5; ++i)
          csp::Sequence(client(i, [i](Proxy p) {
            p.call(DictSet{i, i + 100});
            print_values(p.call(DictValues{}));
          }));

        std::puts("-- Manager().list(): one process appends a record, another prints them --");
        std::fflush(stdout);
        csp::Sequence(client(5,
                             [](Proxy p) {
                               p.call(ListAppend{"English", 3});
                               std::puts("A New record is added");
                               std::fflush(stdout);
                             }),
                      client(6, [](Proxy p) {
                        Reply records = p.call(ListItems{});
                        for (auto& [subject, score] : records)
                          std::printf("Name: %s  Score: %ld\n", subject.c_str(), score);
                        std::fflush(stdout);
                      }));

        std::puts("-- Manager().Namespace(): x = 1, y = 1; a child does x += 5, y *= 10 --");
        main_proxy.call(NsAdd{'x', 1});
        main_proxy.call(NsAdd{'y', 1});
        Reply before = main_proxy.call(NsGet{});
        std::printf("before Namespace(x=%ld, y=%ld)\n", before[0].second, before[1].second);
        std::fflush(stdout);
        csp::Sequence(client(7, [](Proxy p) {
          p.call(NsAdd{'x', 5});
          p.call(NsMul{'y', 10});
        }));
        Reply after = main_proxy.call(NsGet{});
        std::printf("after Namespace(x=%ld, y=%ld)\n", after[0].second, after[1].second);
        main_proxy.requests.retire();  // the last client leaves: the manager's loop ends
      });
}
