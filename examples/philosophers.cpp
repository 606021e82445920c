// philosophers: Dijkstra's dining philosophers, after Hoare's CSP (1985,
// §2.5): five philosophers, five forks, each fork a process.
//
//   philosopher i: think; pick up fork i (left); pick up fork i+1 (right);
//                  eat; put both down
//   fork j:        "up" from whichever neighbour comes first, then "down"
//                  (from the same one: only the holder can put it down)
//
// First as written: once all five hold their left fork, each waits forever
// for its right one. csp notices that every process is blocked and nothing
// can wake any of them, and says so: csp::Deadlock's message names each
// process and the channel it waits on. (The philosophers pause between
// their two forks, so the deadlock comes within a meal or two instead of
// eventually; they would dine forever otherwise.)
//
// Then Hoare's fix: a butler (his "footman") who lets at most four sit at
// the table at a time. With four seated, one of them always gets both forks.
#include <chrono>
#include <climits>
#include <csp/csp.hpp>
#include <cstdio>
#include <string>
#include <vector>

using namespace std::chrono_literals;

constexpr int kN = 5;

void fork_process(csp::Reader<int> up, csp::Reader<int> down) {
  for (;;) {
    up.read();    // a philosopher picks it up ...
    down.read();  // ... and puts it down again
  }
}

struct Forks {
  csp::Writer<int> left_up, left_down, right_up, right_down;
};

// `sit` and `stand` are the butler's channels; empty ends if there is none.
void philosopher(int id, Forks forks, int meals, csp::Writer<int> sit, csp::Writer<int> stand) {
  for (int meal = 0; meal < meals; ++meal) {
    csp::sleep_for(1ms);  // think
    if (sit) sit.write(id);
    forks.left_up.write(id);
    csp::sleep_for(2ms);  // reach across the table
    forks.right_up.write(id);
    csp::yield();         // eat
    forks.left_down.write(id);
    forks.right_down.write(id);
    if (stand) stand.write(id);
  }
}

// Seats at most kN - 1 philosophers at a time.
void butler(csp::Reader<int> sit, csp::Reader<int> stand) {
  int seated = 0;
  csp::Alternation alt{csp::input(sit), csp::input(stand)};
  for (;;) {
    alt.enable(0, seated < kN - 1);  // occam: (seated < 4) & sit ? id
    if (alt.pri_select().index == 0) ++seated;
    else --seated;
  }
}

struct Table {
  std::vector<csp::Channel<int>> up, down;  // fork j's channels
  csp::Channel<int> sit{"butler sit"}, stand{"butler stand"};

  Table() {
    for (int j = 0; j < kN; ++j) {
      up.emplace_back("fork " + std::to_string(j) + " up");
      down.emplace_back("fork " + std::to_string(j) + " down");
    }
  }
  std::vector<csp::Process<void>> forks() {
    std::vector<csp::Process<void>> ps;
    for (int j = 0; j < kN; ++j)
      ps.push_back(csp::process(fork_process, up[j].reader(), down[j].reader()).named("fork " + std::to_string(j)));
    return ps;
  }
  std::vector<csp::Process<void>> philosophers(int meals, bool with_butler) {
    std::vector<csp::Process<void>> ps;
    for (int i = 0; i < kN; ++i) {
      int r = (i + 1) % kN;
      Forks f{up[i].writer(), down[i].writer(), up[r].writer(), down[r].writer()};
      ps.push_back(csp::process(philosopher, i, f, meals, with_butler ? sit.writer() : csp::Writer<int>{},
                                with_butler ? stand.writer() : csp::Writer<int>{})
                       .named("philosopher " + std::to_string(i)));
    }
    return ps;
  }
};

int main() {
  std::puts("== five philosophers, each picks up the left fork first ==");
  try {
    Table t;
    csp::Parallel(t.forks(), t.philosophers(INT_MAX, false));
  } catch (const csp::Deadlock& e) {
    std::printf("%s\n", e.what());
  }

  std::puts("== with a butler who seats at most four ==");
  Table t;
  constexpr int kMeals = 20;
  csp::Parallel(csp::process(butler, t.sit.reader(), t.stand.reader()).named("butler"), t.forks(),
                csp::process([&t] {
                  csp::Parallel(t.philosophers(kMeals, true));
                  // Everyone has eaten: the butler and the forks serve
                  // forever, so stop them with poison.
                  t.sit.poison();
                  for (auto& c : t.up) c.poison();
                }));
  std::printf("all %d philosophers ate %d meals each; no deadlock\n", kN, kMeals);
}
