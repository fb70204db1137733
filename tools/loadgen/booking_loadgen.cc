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
//   yilian-booking-loadgen --port 8080 --token T --equipment-prefix bench-eq-
//       --equipment 200 --exam BENCH-5 --slot-minutes 5 --connections 1000 --duration 20
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "tools/loadgen/latency.h"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
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
};

std::string iso_utc(std::int64_t t) {
  const std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

asio::awaitable<void> client(const options& o, std::atomic<std::uint64_t>& next, std::int64_t day0, stats& st,
                             clock_type::time_point measure_from, clock_type::time_point end) {
  auto ex = co_await asio::this_coro::executor;
  beast::tcp_stream stream(ex);
  boost::system::error_code ec;
  tcp::resolver resolver(ex);
  auto endpoints = co_await resolver.async_resolve(o.host, std::to_string(o.port), asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    st.errors++;
    co_return;
  }
  co_await stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    st.errors++;
    co_return;
  }
  std::vector<double> local;
  beast::flat_buffer buffer;
  while (clock_type::now() < end) {
    http::request<http::string_body> req;
    req.version(11);
    req.set(http::field::host, o.host);
    req.set(http::field::authorization, "Bearer " + o.token);
    req.keep_alive(true);
    if (o.mode == "healthz") {
      req.method(http::verb::get);
      req.target("/healthz");
    } else {
      const std::uint64_t n = next.fetch_add(1);
      const std::uint64_t machine = n % o.equipment;
      const std::uint64_t slot = n / o.equipment;
      const std::int64_t start = day0 + static_cast<std::int64_t>(slot) * o.slot_minutes * 60;
      req.method(http::verb::post);
      req.target("/api/v1/bookings");
      req.set(http::field::content_type, "application/json");
      req.body() = "{\"equipment_id\":\"" + o.equipment_prefix + std::to_string(machine) + "\",\"exam_code\":\"" +
                   o.exam + "\",\"start\":\"" + iso_utc(start) +
                   "\",\"identifiers\":[{\"system\":\"urn:yilian:id:bench:mrn\",\"value\":\"P" + std::to_string(n) +
                   "\"}]}";
      req.prepare_payload();
    }
    const auto sent = clock_type::now();
    co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      st.errors++;
      co_return;
    }
    http::response<http::string_body> res;
    co_await http::async_read(stream, buffer, res, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      st.errors++;
      co_return;
    }
    const auto done = clock_type::now();
    const unsigned code = res.result_int();
    if (code == 201 || (o.mode == "healthz" && code == 200)) {
      st.created++;
    } else if (code == 409) {
      st.conflicts++;
    } else {
      st.other++;
      std::lock_guard lock(st.mu);
      if (st.first_other.empty()) st.first_other = std::to_string(code) + " " + res.body().substr(0, 300);
    }
    if (sent >= measure_from && done <= end) {
      st.measured++;
      local.push_back(std::chrono::duration<double, std::milli>(done - sent).count());
    }
  }
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
  app.add_option("--threads", o.threads, "Client I/O threads");
  app.add_option("--first-request", o.first_request, "Start of the slot sequence (a second run skips the first's slots)");
  CLI11_PARSE(app, argc, argv);
  const std::int64_t now_s =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const std::int64_t day0 = (now_s / 86400 + o.days_ahead) * 86400;
  stats st;
  std::atomic<std::uint64_t> next{o.first_request};
  asio::io_context ioc(static_cast<int>(o.threads));
  const auto start = clock_type::now();
  const auto measure_from = start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(o.warmup_s));
  const auto end = measure_from + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(o.duration_s));
  for (unsigned i = 0; i < o.connections; ++i) {
    asio::co_spawn(ioc, client(o, next, day0, st, measure_from, end), asio::detached);
  }
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < o.threads; ++i) pool.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  auto& l = st.latencies_ms;
  const double measured = static_cast<double>(st.measured.load());
  std::printf(
      "{\"mode\":\"%s\",\"connections\":%u,\"equipment\":%u,\"duration_s\":%.1f,\"ok\":%llu,\"conflicts\":%llu,"
      "\"other\":%llu,\"errors\":%llu,\"next_request\":%llu,\"measured\":%.0f,\"throughput_per_s\":%.0f,"
      "\"latency_ms\":%s,\"first_other\":\"%s\"}\n",
      o.mode.c_str(), o.connections, o.equipment, o.duration_s, static_cast<unsigned long long>(st.created.load()),
      static_cast<unsigned long long>(st.conflicts.load()), static_cast<unsigned long long>(st.other.load()),
      static_cast<unsigned long long>(st.errors.load()), static_cast<unsigned long long>(next.load()), measured,
      measured / o.duration_s, yilian::loadgen::latency_json(l).c_str(), json_escape(st.first_other).c_str());
  return st.errors.load() == 0 && st.other.load() == 0 && st.conflicts.load() == 0 ? 0 : 1;
}
