// yilian-booking-loadgen — drives the booking API the way many clinics would:
// N concurrent HTTP/1.1 keep-alive clients, each booking one slot at a time
// (POST /api/v1/bookings) and waiting for the decision. Every request names a
// slot no other request names (request n books machine n mod E at slot
// n div E of a 24/7 schedule), so each answer should be 201; a 409 means the
// engine thought two requests collided. Reports throughput and latency from
// request to confirmed booking as one JSON object.
//
// --mode healthz sends GET /healthz instead: the HTTP stack's own ceiling on
// this machine, as a baseline run side by side.
//
// The generator shares the machine's cores with the engine it measures, so it
// is kept lean: one thread (by default), level-triggered epoll over
// non-blocking sockets, each request formatted into the connection's buffer
// and each response read with a minimal HTTP/1.1 reader (status line,
// Content-Length, body) — no per-request allocation, no coroutine frames.
//
//   yilian-booking-loadgen --port 8080 --token T --equipment-prefix bench-eq-
//       --equipment 200 --exam BENCH-5 --slot-minutes 5 --connections 1000 --duration 20
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "tools/loadgen/latency.h"

using clock_type = std::chrono::steady_clock;

namespace {

struct options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  std::string token;
  std::string mode = "book";
  std::string equipment_prefix = "bench-eq-";
  unsigned equipment = 200;
  std::string exam = "BENCH-5";
  unsigned slot_minutes = 5;
  unsigned days_ahead = 1;
  unsigned connections = 1000;
  double duration_s = 20;
  double warmup_s = 3;
  unsigned threads = 1;
  std::uint64_t first_request = 0;  // offset into the slot sequence (run twice without collisions)
};

struct stats {
  std::atomic<std::uint64_t> created{0}, conflicts{0}, other{0}, errors{0}, measured{0};
  std::mutex mu;
  std::vector<double> latencies_ms;
  std::string first_other;
  std::string first_error;
};

void note_error(stats& st, std::string what) {
  st.errors++;
  std::lock_guard lock(st.mu);
  if (st.first_error.empty()) st.first_error = std::move(what);
}

std::string iso_utc(std::int64_t t) {
  const std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// What every request repeats, formatted once.
struct request_parts {
  std::string head;        // request line and headers up to (not including) Content-Length
  std::string body_start;  // {"equipment_id":"<prefix>
};

// One keep-alive client.
struct conn {
  int fd = -1;
  std::string out;  // the request being written
  std::size_t written = 0;
  std::string in;   // the response being read
  clock_type::time_point sent;
  bool done = false;
};

// The status and total length (headers + body) of a complete response at the
// front of `in`, or total 0 while it is still incomplete; status 0 on a
// response this reader cannot follow (no Content-Length, chunked).
struct response_head {
  unsigned status = 0;
  std::size_t total = 0;
};

bool iequals_prefix(std::string_view line, std::string_view name) {
  if (line.size() < name.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char a = static_cast<char>(line[i] | 0x20), b = static_cast<char>(name[i] | 0x20);
    if (a != b) return false;
  }
  return true;
}

response_head parse_head(std::string_view in, bool& bad) {
  response_head r;
  const auto end = in.find("\r\n\r\n");
  if (end == std::string_view::npos) return r;
  const std::string_view head = in.substr(0, end + 2);
  if (head.size() < 12 || head.substr(0, 5) != "HTTP/") {
    bad = true;
    return r;
  }
  std::from_chars(head.data() + 9, head.data() + 12, r.status);
  std::size_t length = 0;
  bool have_length = false;
  for (std::size_t pos = head.find("\r\n") + 2; pos < head.size();) {
    const auto eol = head.find("\r\n", pos);
    const std::string_view line = head.substr(pos, eol - pos);
    if (iequals_prefix(line, "content-length:")) {
      auto v = line.substr(15);
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      have_length = std::from_chars(v.data(), v.data() + v.size(), length).ec == std::errc{};
    }
    pos = eol + 2;
  }
  if (!have_length) {
    bad = true;
    return r;
  }
  const std::size_t total = end + 4 + length;
  if (in.size() >= total) r.total = total;
  return r;
}

int connect_to(const options& o) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const auto port = std::to_string(o.port);
  if (getaddrinfo(o.host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) return -1;
  int fd = -1;
  for (auto* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    ::close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) return -1;
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Runs `count` clients on one epoll loop until `end`.
void run_clients(const options& o, unsigned count, std::atomic<std::uint64_t>& next, std::int64_t day0, stats& st,
                 clock_type::time_point measure_from, clock_type::time_point end) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  std::vector<conn> conns(count);
  std::vector<double> local;
  local.reserve(1 << 20);
  request_parts parts;
  if (o.mode == "healthz") {
    parts.head = "GET /healthz HTTP/1.1\r\nHost: " + o.host + "\r\nAuthorization: Bearer " + o.token + "\r\n\r\n";
  } else {
    parts.head = "POST /api/v1/bookings HTTP/1.1\r\nHost: " + o.host + "\r\nAuthorization: Bearer " + o.token +
                 "\r\nContent-Type: application/json\r\nContent-Length: ";
    parts.body_start = "{\"equipment_id\":\"" + o.equipment_prefix;
  }
  std::string body;
  auto next_request = [&](conn& c) {
    c.out.clear();
    c.written = 0;
    if (o.mode == "healthz") {
      c.out = parts.head;
    } else {
      const std::uint64_t n = next.fetch_add(1, std::memory_order_relaxed);
      const std::uint64_t machine = n % o.equipment;
      const std::uint64_t slot = n / o.equipment;
      const std::int64_t start = day0 + static_cast<std::int64_t>(slot) * o.slot_minutes * 60;
      body = parts.body_start;
      body += std::to_string(machine);
      body += "\",\"exam_code\":\"";
      body += o.exam;
      body += "\",\"start\":\"";
      body += iso_utc(start);
      body += "\",\"identifiers\":[{\"system\":\"urn:yilian:id:bench:mrn\",\"value\":\"P";
      body += std::to_string(n);
      body += "\"}]}";
      c.out = parts.head;
      c.out += std::to_string(body.size());
      c.out += "\r\n\r\n";
      c.out += body;
    }
    c.sent = clock_type::now();
  };
  unsigned open = 0;  // connections still running
  auto close_conn = [&](conn& c) {
    if (c.fd >= 0) {
      ::epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
      ::close(c.fd);
      --open;
    }
    c.fd = -1;
    c.done = true;
  };
  auto watch = [&](conn& c, int op, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = &c;
    ::epoll_ctl(ep, op, c.fd, &ev);
  };
  // Writes what is left of c.out; arms EPOLLOUT only when the socket is full.
  auto flush = [&](conn& c) -> bool {
    while (c.written < c.out.size()) {
      const auto n = ::send(c.fd, c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
      if (n > 0) {
        c.written += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        watch(c, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
        return true;
      }
      note_error(st, std::string("send: ") + std::strerror(errno));
      return false;
    }
    return true;
  };
  for (auto& c : conns) {
    c.fd = connect_to(o);
    if (c.fd < 0) {
      note_error(st, std::string("connect: ") + std::strerror(errno));
      c.done = true;
      continue;
    }
    c.in.reserve(4096);
    watch(c, EPOLL_CTL_ADD, EPOLLIN);
    ++open;
    next_request(c);
    if (!flush(c)) {
      close_conn(c);
    }
  }
  std::vector<epoll_event> events(256);
  char buf[16384];
  while (open > 0) {
    const int ready = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 1000);
    if (ready < 0 && errno == EINTR) continue;
    for (int i = 0; i < ready; ++i) {
      conn& c = *static_cast<conn*>(events[static_cast<std::size_t>(i)].data.ptr);
      if (c.done) continue;
      const auto what = events[static_cast<std::size_t>(i)].events;
      if ((what & EPOLLOUT) != 0 && c.written < c.out.size()) {
        if (!flush(c)) {
          close_conn(c);
          continue;
        }
        if (c.written == c.out.size()) watch(c, EPOLL_CTL_MOD, EPOLLIN);
      }
      if ((what & (EPOLLIN | EPOLLERR | EPOLLHUP)) == 0) continue;
      const auto n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) {
        note_error(st, n == 0 ? "the engine closed a connection" : std::string("recv: ") + std::strerror(errno));
        close_conn(c);
        continue;
      }
      c.in.append(buf, static_cast<std::size_t>(n));
      bool bad = false;
      const auto head = parse_head(c.in, bad);
      if (bad) {
        note_error(st, "unreadable response: " + c.in.substr(0, 200));
        close_conn(c);
        continue;
      }
      if (head.total == 0) continue;
      const auto done_at = clock_type::now();
      if (head.status == 201 || (o.mode == "healthz" && head.status == 200)) {
        st.created++;
      } else if (head.status == 409) {
        st.conflicts++;
      } else {
        st.other++;
        std::lock_guard lock(st.mu);
        if (st.first_other.empty()) {
          const auto body_at = c.in.find("\r\n\r\n") + 4;
          st.first_other = std::to_string(head.status) + " " + c.in.substr(body_at, std::min<std::size_t>(300, head.total - body_at));
        }
      }
      if (c.sent >= measure_from && done_at <= end) {
        st.measured++;
        local.push_back(std::chrono::duration<double, std::milli>(done_at - c.sent).count());
      }
      c.in.erase(0, head.total);
      if (done_at >= end) {
        close_conn(c);
        continue;
      }
      next_request(c);
      if (!flush(c)) {
        close_conn(c);
      }
    }
  }
  ::close(ep);
  std::lock_guard lock(st.mu);
  st.latencies_ms.insert(st.latencies_ms.end(), local.begin(), local.end());
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"Booking API load generator: concurrent clients, booking latency percentiles (JSON on stdout)"};
  app.add_option("--host", o.host, "HTTP host");
  app.add_option("--port", o.port, "HTTP port")->required();
  app.add_option("--token", o.token, "Bearer token of a principal that may book the machines");
  app.add_option("--mode", o.mode, "book (POST /api/v1/bookings) or healthz (baseline: GET /healthz)");
  app.add_option("--equipment-prefix", o.equipment_prefix, "Machine ids are <prefix><0..N-1>");
  app.add_option("--equipment", o.equipment, "Number of machines");
  app.add_option("--exam", o.exam, "Exam code every machine does");
  app.add_option("--slot-minutes", o.slot_minutes, "The exam's slot length");
  app.add_option("--days-ahead", o.days_ahead, "First slot: midnight UTC this many days ahead");
  app.add_option("--connections", o.connections, "Concurrent clients (keep-alive connections)");
  app.add_option("--duration", o.duration_s, "Measured seconds (after the warm-up)");
  app.add_option("--warmup", o.warmup_s, "Seconds sent but not measured");
  app.add_option("--threads", o.threads, "Client threads (each runs its share of the connections)")->check(CLI::Range(1u, 64u));
  app.add_option("--first-request", o.first_request, "Start of the slot sequence (a second run skips the first's slots)");
  CLI11_PARSE(app, argc, argv);
  if (o.mode != "book" && o.mode != "healthz") {
    std::fprintf(stderr, "--mode must be book or healthz\n");
    return 2;
  }
  const std::int64_t now_s =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const std::int64_t day0 = (now_s / 86400 + o.days_ahead) * 86400;
  stats st;
  std::atomic<std::uint64_t> next{o.first_request};
  const auto start = clock_type::now();
  const auto measure_from = start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(o.warmup_s));
  const auto end = measure_from + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(o.duration_s));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < o.threads; ++t) {
    const unsigned share = o.connections / o.threads + (t < o.connections % o.threads ? 1 : 0);
    pool.emplace_back([&, share] { run_clients(o, share, next, day0, st, measure_from, end); });
  }
  run_clients(o, o.connections / o.threads + (0 < o.connections % o.threads ? 1 : 0), next, day0, st, measure_from,
              end);
  for (auto& t : pool) t.join();
  auto& l = st.latencies_ms;
  const double measured = static_cast<double>(st.measured.load());
  std::printf(
      "{\"mode\":\"%s\",\"connections\":%u,\"equipment\":%u,\"duration_s\":%.1f,\"ok\":%llu,\"conflicts\":%llu,"
      "\"other\":%llu,\"errors\":%llu,\"next_request\":%llu,\"measured\":%.0f,\"throughput_per_s\":%.0f,"
      "\"latency_ms\":%s,\"first_other\":\"%s\",\"first_error\":\"%s\"}\n",
      o.mode.c_str(), o.connections, o.equipment, o.duration_s, static_cast<unsigned long long>(st.created.load()),
      static_cast<unsigned long long>(st.conflicts.load()), static_cast<unsigned long long>(st.other.load()),
      static_cast<unsigned long long>(st.errors.load()), static_cast<unsigned long long>(next.load()), measured,
      measured / o.duration_s, yilian::loadgen::latency_json(l).c_str(), json_escape(st.first_other).c_str(),
      json_escape(st.first_error).c_str());
  return st.errors.load() == 0 && st.other.load() == 0 && st.conflicts.load() == 0 ? 0 : 1;
}
