// Tests of csp/trace.hpp (DESIGN §6): the trace file is JSON in the Chrome
// trace format with one complete event per blocking operation, naming the
// operation, the channel, the process and how the wait ended; the DOT file
// draws processes and channels with writer -> channel -> reader edges;
// events of os_process children land in the parent's file; a bad path is a
// csp::Error naming it; nothing is recorded once tracing stops.
// Run by ctest with CSP_WORKERS=1 and 4.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csp/csp.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

using namespace std::chrono_literals;

namespace {

// ----------------------------------------------------- a small JSON reader
// Enough JSON to check the trace: objects, arrays, strings (with escapes),
// numbers, true/false/null. Throws std::runtime_error on malformed input,
// so a test fails on a file Perfetto could not load.
struct Json {
  using Object = std::map<std::string, Json>;
  using Array = std::vector<Json>;
  std::variant<std::nullptr_t, bool, double, std::string, std::shared_ptr<Array>, std::shared_ptr<Object>> v;

  const Json& operator[](const std::string& key) const {
    const auto& o = *std::get<std::shared_ptr<Object>>(v);
    auto it = o.find(key);
    if (it == o.end()) throw std::runtime_error("no key " + key);
    return it->second;
  }
  bool has(const std::string& key) const {
    auto* o = std::get_if<std::shared_ptr<Object>>(&v);
    return o && (*o)->count(key);
  }
  const Array& array() const { return *std::get<std::shared_ptr<Array>>(v); }
  const std::string& str() const { return std::get<std::string>(v); }
  double num() const { return std::get<double>(v); }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& text) : s_(text) {}
  Json parse() {
    Json j = value();
    ws();
    if (i_ != s_.size()) fail("trailing characters");
    return j;
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error("JSON: " + what + " at offset " + std::to_string(i_));
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  char peek() {
    ws();
    if (i_ >= s_.size()) fail("unexpected end");
    return s_[i_];
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected ") + c);
    ++i_;
  }
  Json value() {
    const char c = peek();
    if (c == '{') {
      ++i_;
      auto o = std::make_shared<Json::Object>();
      if (peek() == '}') {
        ++i_;
        return Json{o};
      }
      for (;;) {
        std::string key = string();
        expect(':');
        (*o)[key] = value();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect('}');
        return Json{o};
      }
    }
    if (c == '[') {
      ++i_;
      auto a = std::make_shared<Json::Array>();
      if (peek() == ']') {
        ++i_;
        return Json{a};
      }
      for (;;) {
        a->push_back(value());
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect(']');
        return Json{a};
      }
    }
    if (c == '"') return Json{string()};
    if (s_.compare(i_, 4, "true") == 0) return i_ += 4, Json{true};
    if (s_.compare(i_, 5, "false") == 0) return i_ += 5, Json{false};
    if (s_.compare(i_, 4, "null") == 0) return i_ += 4, Json{nullptr};
    const std::size_t start = i_;
    while (i_ < s_.size() && std::strchr("+-0123456789.eE", s_[i_])) ++i_;
    if (start == i_) fail("unexpected character");
    return Json{std::stod(s_.substr(start, i_ - start))};
  }
  std::string string() {
    expect('"');
    std::string out;
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c == '\\') {
        if (i_ >= s_.size()) fail("bad escape");
        const char e = s_[i_++];
        switch (e) {
          case 'n': c = '\n'; break;
          case 't': c = '\t'; break;
          case 'r': c = '\r'; break;
          case 'u':
            if (i_ + 4 > s_.size()) fail("bad \\u escape");
            c = static_cast<char>(std::stoi(s_.substr(i_, 4), nullptr, 16));
            i_ += 4;
            break;
          case '"': case '\\': case '/': c = e; break;
          default: fail("bad escape");
        }
      }
      out += c;
    }
    expect('"');
    return out;
  }
  const std::string& s_;
  std::size_t i_ = 0;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

/// A fresh directory for one test's files, removed afterwards.
class TraceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/csp-trace-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/run.json";
  }
  void TearDown() override {
    csp::trace_stop();
    std::system(("rm -rf '" + dir_ + "'").c_str());
  }

  /// The complete ("X") events of the trace file.
  std::vector<Json> events() {
    Json doc = JsonParser(slurp(path_)).parse();
    std::vector<Json> out;
    for (const Json& e : doc["traceEvents"].array())
      if (e["ph"].str() == "X") out.push_back(e);
    return out;
  }
  /// Events named `name` recorded for process `process`.
  std::vector<Json> events_of(const std::string& name, const std::string& process) {
    std::vector<Json> out;
    for (const Json& e : events())
      if (e["name"].str() == name && e["args"]["process"].str() == process) out.push_back(e);
    return out;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(TraceTest, BlockingReadsAndWritesAreEventsNamingChannelAndProcess) {
  csp::trace_start(path_);
  ASSERT_TRUE(csp::tracing());
  csp::Channel<int> jobs{"jobs"};
  std::atomic<bool> reading{false};
  csp::Parallel(
      csp::process(
          [&reading](csp::Writer<int> out) {
            while (!reading.load()) csp::sleep_for(1ms);
            csp::sleep_for(20ms);  // the consumer blocks in its first read meanwhile
            out.write(1);
            out.write(2);  // blocks: the consumer sleeps before its second read
          },
          jobs.writer())
          .named("producer"),
      csp::process(
          [&reading](csp::Reader<int> in) {
            reading.store(true);
            EXPECT_EQ(in.read(), 1);
            csp::sleep_for(20ms);
            EXPECT_EQ(in.read(), 2);
          },
          jobs.reader())
          .named("consumer"));
  csp::trace_flush();

  const auto reads = events_of("read jobs", "consumer");
  const auto writes = events_of("write jobs", "producer");
  ASSERT_GE(reads.size(), 1u);
  ASSERT_GE(writes.size(), 1u);
  for (const Json& e : reads) {
    EXPECT_EQ(e["args"]["object"].str(), "jobs");
    EXPECT_EQ(e["args"]["operation"].str(), "read");
    EXPECT_EQ(e["args"]["result"].str(), "ok");
    EXPECT_EQ(e["pid"].num(), double(::getpid()));
    EXPECT_GT(e["dur"].num(), 0.0) << slurp(path_);
  }
  EXPECT_FALSE(events_of("sleep", "producer").empty()) << "a sleep blocks too";
  // Each process has its own named track.
  Json doc = JsonParser(slurp(path_)).parse();
  std::map<double, std::string> tracks;
  for (const Json& e : doc["traceEvents"].array())
    if (e["ph"].str() == "M" && e["name"].str() == "thread_name") tracks[e["tid"].num()] = e["args"]["name"].str();
  EXPECT_EQ(tracks[reads[0]["tid"].num()], "consumer");
  EXPECT_EQ(tracks[writes[0]["tid"].num()], "producer");
}

TEST_F(TraceTest, EventsSayHowAWaitEnded) {
  csp::trace_start(path_);
  csp::Channel<int> quiet{"quiet"}, doomed{"doomed"}, ready{"ready"};
  auto keep_quiet = quiet.writer();  // a writer exists: the read times out, it does not retire
  csp::Parallel(
      csp::process(
          [](csp::Reader<int> q) { EXPECT_FALSE(q.read_for(3ms).has_value()); }, quiet.reader())
          .named("timer"),
      csp::process(
          [](csp::Reader<int> d, csp::Writer<int> r) {
            r.write(1);  // then straight into the read, which must block
            try {
              d.read();
              ADD_FAILURE() << "read of a poisoned channel returned";
            } catch (const csp::ChannelPoisoned&) {
            }
          },
          doomed.reader(), ready.writer())
          .named("victim"),
      csp::process(
          [](csp::Writer<int> d, csp::Reader<int> r) {
            r.read();
            csp::sleep_for(20ms);  // the victim is blocked in its read long before (even on a loaded machine)
            d.poison();
          },
          doomed.writer(), ready.reader())
          .named("poisoner"));
  csp::trace_flush();
  const auto timed = events_of("read quiet", "timer");
  ASSERT_EQ(timed.size(), 1u);
  EXPECT_EQ(timed[0]["args"]["result"].str(), "timeout");
  const auto poisoned = events_of("read doomed", "victim");
  ASSERT_EQ(poisoned.size(), 1u);
  EXPECT_EQ(poisoned[0]["args"]["result"].str(), "poisoned");
}

TEST_F(TraceTest, DotDrawsWriterChannelReaderEdges) {
  csp::trace_start(path_);
  csp::Channel<int> a{"numbers"}, b{"squares"};
  csp::Parallel(
      csp::process(
          [](csp::Writer<int> out) {
            for (int i = 0; i < 3; ++i) out.write(i);
            out.retire();
          },
          a.writer())
          .named("source"),
      csp::process(
          [](csp::Reader<int> in, csp::Writer<int> out) {
            for (int v : in) out.write(v * v);
            out.retire();
          },
          a.reader(), b.writer())
          .named("square"),
      csp::process(
          [](csp::Reader<int> in) {
            int n = 0;
            for (int v : in) n += v >= 0;
            EXPECT_EQ(n, 3);
          },
          b.reader())
          .named("sink"));
  csp::trace_stop();
  EXPECT_FALSE(csp::tracing());
  ASSERT_EQ(csp::dot_path_for(path_), dir_ + "/run.dot");
  const std::string dot = slurp(dir_ + "/run.dot");
  ASSERT_EQ(dot.rfind("digraph csp {", 0), 0u) << dot;
  // Node ids by label: lines "  <id> [shape=..., label="<label>"...".
  auto id_of = [&](const std::string& label) {
    std::istringstream lines(dot);
    for (std::string line; std::getline(lines, line);) {
      const auto bracket = line.find(" [shape=");
      if (bracket != std::string::npos && line.find("label=\"" + label + "\"") != std::string::npos)
        return line.substr(2, bracket - 2);
    }
    return std::string("?");
  };
  auto has_edge = [&](const std::string& from, const std::string& to) {
    return dot.find("  " + id_of(from) + " -> " + id_of(to) + ";") != std::string::npos;
  };
  EXPECT_TRUE(has_edge("source", "numbers")) << dot;
  EXPECT_TRUE(has_edge("numbers", "square")) << dot;
  EXPECT_TRUE(has_edge("square", "squares")) << dot;
  EXPECT_TRUE(has_edge("squares", "sink")) << dot;
  EXPECT_FALSE(has_edge("sink", "squares")) << dot;

  std::ostringstream again;
  csp::write_network_dot(again);
  EXPECT_EQ(again.str(), dot);
}

TEST_F(TraceTest, NothingIsRecordedOnceStopped) {
  csp::trace_start(path_);
  csp::trace_stop();
  const std::string before = slurp(path_);
  ASSERT_NO_THROW(JsonParser(before).parse());
  csp::Channel<int> c{"later"};
  csp::Parallel(csp::process([](csp::Writer<int> w) { w.write(1); }, c.writer()),
                csp::process([](csp::Reader<int> r) {
                  csp::sleep_for(2ms);
                  r.read();
                }, c.reader()));
  csp::trace_flush();
  EXPECT_EQ(slurp(path_), before);
}

TEST_F(TraceTest, AnUnwritablePathIsAnErrorNamingIt) {
  const std::string bad = dir_ + "/no-such-dir/run.json";
  try {
    csp::trace_start(bad);
    FAIL() << "trace_start on an unwritable path returned";
  } catch (const csp::Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
  EXPECT_FALSE(csp::tracing());
}

TEST_F(TraceTest, AnOsProcessChildsEventsLandInTheParentsFile) {
#if defined(CSP_TSAN)
  GTEST_SKIP() << "TSan cannot follow threads started in a child of a multi-threaded fork";
#endif
  csp::trace_start(path_);
  csp::Channel<int> c{"to-child", csp::transport::pipe};
  csp::Parallel(
      csp::process(
          [](csp::Writer<int> w) {
            csp::sleep_for(20ms);  // the child blocks in its read meanwhile
            w.write(7);
          },
          c.writer()),
      csp::os_process([](csp::Reader<int> r) {
        csp::sleep_for(1ms);
        if (r.read() != 7) throw std::runtime_error("wrong value");
      }, c.reader()).named("child"));
  csp::trace_flush();
  EXPECT_FALSE(exists(path_ + ".parts")) << "the parent merged and removed the children's part";
  bool child_slept = false, child_read = false;
  for (const Json& e : events()) {
    if (e["pid"].num() == double(::getpid())) continue;
    child_slept |= e["name"].str() == "sleep" && e["args"]["process"].str() == "main";
    child_read |= e["name"].str() == "read" && e["args"]["process"].str() == "main";
  }
  EXPECT_TRUE(child_slept) << slurp(path_);
  EXPECT_TRUE(child_read) << "the child's main thread waited for the pipe: " << slurp(path_);
  // The os_process is a box of the parent's network, reading its channel.
  const std::string dot = slurp(dir_ + "/run.dot");
  EXPECT_NE(dot.find("label=\"child\", tooltip=\"os_process\""), std::string::npos) << dot;
}

}  // namespace
