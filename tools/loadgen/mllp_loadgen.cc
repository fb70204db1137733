// yilian-loadgen — drives an MLLP listener the way a consortium's hospitals
// would: N concurrent connections, each sending one message at a time and
// waiting for its ACK (MLLP allows nothing else), messages from a small mix of
// realistic templates with unique control ids, optionally at a fixed total
// rate. Reports throughput and ACK latency percentiles as one JSON object.
//
// The messages are about a population of --patients people, each with its own
// MRN, resident ID (valid GB 11643 check digit), name and birth date: every
// connection takes patients in turn and sends, for each, a registration
// (ADT^A04), an update (ADT^A08) and a report (ORU^R01). Once the population
// has been seen, registrations repeat and the engine's patient state stops
// growing, as in a hospital whose patients come back.
//
// Latency at a fixed rate is measured from the message's scheduled send time,
// not from when the previous ACK let it go, so a stall shows up in the
// percentiles instead of silently lowering the offered load (coordinated
// omission).
//
//   yilian-loadgen --port 2575 --connections 64 --duration 30 [--rate 25000]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "tools/loadgen/latency.h"

namespace asio = boost::asio;
using asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

struct options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 2575;
  unsigned connections = 64;
  double duration_s = 30;
  double warmup_s = 3;
  double rate = 0;  // messages/s over all connections; 0 = as fast as ACKs allow
  unsigned threads = 1;
  std::string facility = "ZSRMYY";
  std::string application = "HIS";
  std::string run_id;
  unsigned patients = 10000;
  unsigned print = 0;  // > 0: write this many of connection 0's messages (unframed) to stdout and exit
};

// One person of the population, derived from its number alone so every run
// (and every connection) names patient p the same way.
struct patient {
  std::string mrn;
  std::string resident_id;
  std::string name;     // family^given (Chinese)
  std::string pinyin;   // FAMILY^GIVEN
  std::string birth;    // YYYYMMDD
  std::string sex;      // M / F
  std::string phone;
};

// GB 11643-1999: the 18th character is the ISO 7064 MOD 11-2 check of the first 17.
char resident_id_check(const std::string& first17) {
  static constexpr int kWeights[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
  int sum = 0;
  for (std::size_t i = 0; i < 17; ++i) sum += (first17[i] - '0') * kWeights[i];
  return "10X98765432"[sum % 11];
}

patient patient_of(unsigned p) {
  static const char* const kFamily[][2] = {{"王", "WANG"}, {"李", "LI"},   {"张", "ZHANG"}, {"刘", "LIU"},
                                           {"陈", "CHEN"}, {"杨", "YANG"}, {"黄", "HUANG"}, {"赵", "ZHAO"},
                                           {"吴", "WU"},   {"周", "ZHOU"}, {"徐", "XU"},    {"孙", "SUN"},
                                           {"马", "MA"},   {"朱", "ZHU"},  {"胡", "HU"},    {"郭", "GUO"}};
  static const char* const kGiven[][2] = {{"伟", "WEI"},     {"芳", "FANG"},   {"娜", "NA"},      {"敏", "MIN"},
                                          {"静", "JING"},    {"丽", "LI"},     {"强", "QIANG"},   {"磊", "LEI"},
                                          {"军", "JUN"},     {"洋", "YANG"},   {"勇", "YONG"},    {"艳", "YAN"},
                                          {"杰", "JIE"},     {"娟", "JUAN"},   {"涛", "TAO"},     {"明", "MING"},
                                          {"超", "CHAO"},    {"秀英", "XIUYING"}, {"桂英", "GUIYING"}, {"建华", "JIANHUA"},
                                          {"志强", "ZHIQIANG"}, {"海燕", "HAIYAN"}, {"子涵", "ZIHAN"},  {"浩然", "HAORAN"}};
  constexpr unsigned kFamilies = sizeof(kFamily) / sizeof(kFamily[0]);
  constexpr unsigned kGivens = sizeof(kGiven) / sizeof(kGiven[0]);
  const unsigned family = p % kFamilies;
  const unsigned given = (p / kFamilies) % kGivens;
  const unsigned year = 1940 + (p * 7U) % 80U;
  const unsigned month = 1 + (p * 5U) % 12U;
  const unsigned day = 1 + (p * 11U) % 28U;
  const unsigned serial = (p / (kFamilies * kGivens)) % 1000U;
  char birth[9];
  std::snprintf(birth, sizeof(birth), "%04u%02u%02u", year, month, day);
  char first17[18];
  std::snprintf(first17, sizeof(first17), "442000%s%03u", birth, serial);
  patient out;
  out.mrn = "LG" + std::to_string(p);
  out.resident_id = std::string(first17) + resident_id_check(first17);
  out.name = std::string(kFamily[family][0]) + "^" + kGiven[given][0];
  out.pinyin = std::string(kFamily[family][1]) + "^" + kGiven[given][1];
  out.birth = birth;
  out.sex = serial % 2 == 1 ? "M" : "F";  // GB 11643: odd sequence numbers are men
  char phone[12];
  std::snprintf(phone, sizeof(phone), "138%08u", p % 100000000U);
  out.phone = phone;
  return out;
}

// Message templates: {CID} control id, {N} a per-message number, {MRN}
// {RID} {NAME} {PINYIN} {DOB} {SEX} {PHONE} the patient's. CR ends segments. One
// patient gets the three in turn.
std::vector<std::string> templates(const options& o) {
  const std::string msh = "MSH|^~\\&|" + o.application + "|" + o.facility + "|YILIAN|ZSYL|20260105093000+0800||";
  return {
      msh + "ADT^A04^ADT_A01|{CID}|P|2.5\rEVN|A04|20260105093000+0800\r"
            "PID|1||{MRN}^^^ZSRMYY^MR~{RID}^^^CHN^NNCHN||{NAME}^^^^^L^I~{PINYIN}^^^^^L^A||{DOB}|{SEX}|||"
            "中山路1号^^中山市^广东省^528400||^PRN^CP^^^^^^^^^{PHONE}\r"
            "PV1|1|O|RAD^^^ZSRMYY||||D01^医生^甲|||||||||||V{N}\r",
      msh + "ADT^A08^ADT_A01|{CID}|P|2.5\rEVN|A08|20260105093000+0800\r"
            "PID|1||{MRN}^^^ZSRMYY^MR~{RID}^^^CHN^NNCHN||{NAME}^^^^^L^I||{DOB}|{SEX}\r",
      msh + "ORU^R01^ORU_R01|{CID}|P|2.5\rPID|1||{MRN}^^^ZSRMYY^MR||{NAME}^^^^^L^I||{DOB}|{SEX}\r"
            "ORC|RE|P{N}|F{N}\rOBR|1|P{N}|F{N}|CT0101^头颅CT平扫^ZSRMYY-EXAM|||20260105090000|||||||||D01^医生^甲||"
            "A{N}||||20260105093000|||F\r"
            "OBX|1|TX|FINDINGS^检查所见||颅内未见明显异常密度影。||||||F\r"
            "OBX|2|TX|IMPRESSION^诊断意见||头颅CT平扫未见明显异常。||||||F\r",
  };
}

// Which patient message `seq` of connection `connection` is about: connection
// c takes patients c, c + connections, ...; one patient per round of templates.
patient patient_for(const options& o, unsigned connection, std::uint64_t seq, std::size_t templates) {
  const std::uint64_t round = seq / templates;
  return patient_of(static_cast<unsigned>((connection + round * o.connections) % std::max(1u, o.patients)));
}

std::string render(const std::string& tpl, const std::string& cid, const std::string& n, const patient& who) {
  const std::pair<std::string_view, const std::string*> fields[] = {
      {"{CID}", &cid},           {"{N}", &n},          {"{MRN}", &who.mrn}, {"{RID}", &who.resident_id},
      {"{NAME}", &who.name},     {"{PINYIN}", &who.pinyin}, {"{DOB}", &who.birth}, {"{SEX}", &who.sex},
      {"{PHONE}", &who.phone}};
  std::string out;
  out.reserve(tpl.size() + 64);
  std::size_t pos = 0;
  while (true) {
    const auto at = tpl.find('{', pos);
    if (at == std::string::npos) break;
    out.append(tpl, pos, at - pos);
    const auto* field = std::find_if(std::begin(fields), std::end(fields),
                                     [&](const auto& f) { return tpl.compare(at, f.first.size(), f.first) == 0; });
    if (field != std::end(fields)) {
      out += *field->second;
      pos = at + field->first.size();
    } else {
      out.push_back('{');
      pos = at + 1;
    }
  }
  out.append(tpl, pos);
  return "\x0b" + out + "\x1c\r";
}

struct stats {
  std::mutex mu;
  std::vector<double> latencies_ms;  // measured-phase ACKs
  std::atomic<std::uint64_t> aa{0}, other{0}, errors{0}, measured{0};
};

asio::awaitable<void> sender(unsigned index, const options& o, const std::vector<std::string>& tpls, stats& st,
                             clock_type::time_point start, clock_type::time_point measure_from,
                             clock_type::time_point end) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket sock(ex);
  boost::system::error_code ec;
  tcp::resolver resolver(ex);
  auto endpoints = co_await resolver.async_resolve(o.host, std::to_string(o.port),
                                                   asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    st.errors++;
    co_return;
  }
  co_await asio::async_connect(sock, endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    st.errors++;
    co_return;
  }
  sock.set_option(tcp::no_delay(true));
  const double per_conn_rate = o.rate > 0 ? o.rate / o.connections : 0;
  const auto interval = per_conn_rate > 0 ? std::chrono::duration_cast<clock_type::duration>(
                                                std::chrono::duration<double>(1.0 / per_conn_rate))
                                          : clock_type::duration::zero();
  // Spread the connections' schedules over one interval.
  auto next = start + (interval * index) / std::max(1u, o.connections);
  asio::steady_timer timer(ex);
  std::string buf;
  buf.reserve(4096);
  std::vector<char> chunk(8192);
  std::uint64_t seq = 0;
  std::vector<double> local;
  while (clock_type::now() < end) {
    if (interval.count() > 0) {
      if (next > clock_type::now()) {
        timer.expires_at(next);
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
    } else {
      next = clock_type::now();
    }
    const auto scheduled = next;
    next += interval;
    const auto n = std::to_string(index) + "x" + std::to_string(seq);
    const auto cid = o.run_id + "-" + std::to_string(index) + "-" + std::to_string(seq);
    const auto frame = render(tpls[seq % tpls.size()], cid, n, patient_for(o, index, seq, tpls.size()));
    ++seq;
    co_await asio::async_write(sock, asio::buffer(frame), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      st.errors++;
      co_return;
    }
    // Read until FS CR.
    buf.clear();
    while (true) {
      const auto fs = buf.find("\x1c\r");
      if (fs != std::string::npos) break;
      const auto got = co_await sock.async_read_some(asio::buffer(chunk), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        st.errors++;
        co_return;
      }
      buf.append(chunk.data(), got);
    }
    const auto done = clock_type::now();
    const bool aa = buf.find("MSA|AA|") != std::string::npos || buf.find("MSA|CA|") != std::string::npos;
    (aa ? st.aa : st.other)++;
    if (scheduled >= measure_from) {
      st.measured++;
      local.push_back(std::chrono::duration<double, std::milli>(done - scheduled).count());
    }
  }
  std::lock_guard lock(st.mu);
  st.latencies_ms.insert(st.latencies_ms.end(), local.begin(), local.end());
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"MLLP load generator: concurrent senders, ACK latency percentiles (JSON on stdout)"};
  app.add_option("--host", o.host, "MLLP host");
  app.add_option("--port", o.port, "MLLP port")->required();
  app.add_option("--connections", o.connections, "Concurrent connections (senders)");
  app.add_option("--duration", o.duration_s, "Measured seconds (after the warm-up)");
  app.add_option("--warmup", o.warmup_s, "Seconds sent but not measured");
  app.add_option("--rate", o.rate, "Total messages per second (0: as fast as ACKs come back)");
  app.add_option("--threads", o.threads, "Client I/O threads");
  app.add_option("--facility", o.facility, "MSH-4 sending facility");
  app.add_option("--application", o.application, "MSH-3 sending application");
  app.add_option("--print", o.print, "Print this many of the messages connection 0 would send, one per line "
                                     "(segments end with CR), and exit without connecting");
  app.add_option("--patients", o.patients, "Size of the patient population the messages are about");
  app.add_option("--run-id", o.run_id, "Control id prefix (default: from the clock, so runs never collide)");
  CLI11_PARSE(app, argc, argv);
  if (o.run_id.empty()) {
    o.run_id = "LG" + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count());
  }
  const auto tpls = templates(o);
  if (o.print > 0) {
    for (unsigned seq = 0; seq < o.print; ++seq) {
      const auto frame = render(tpls[seq % tpls.size()], o.run_id + "-0-" + std::to_string(seq),
                                "0x" + std::to_string(seq), patient_for(o, 0, seq, tpls.size()));
      std::printf("%s\n", frame.substr(1, frame.size() - 3).c_str());
    }
    return 0;
  }
  stats st;
  asio::io_context ioc(static_cast<int>(o.threads));
  const auto start = clock_type::now() + std::chrono::milliseconds(200);
  const auto measure_from = start + std::chrono::duration_cast<clock_type::duration>(
                                        std::chrono::duration<double>(o.warmup_s));
  const auto end = measure_from + std::chrono::duration_cast<clock_type::duration>(
                                      std::chrono::duration<double>(o.duration_s));
  for (unsigned i = 0; i < o.connections; ++i) {
    asio::co_spawn(ioc, sender(i, o, tpls, st, start, measure_from, end), asio::detached);
  }
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < o.threads; ++i) pool.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  auto& l = st.latencies_ms;
  const double measured = static_cast<double>(st.measured.load());
  std::printf(
      "{\"connections\":%u,\"target_rate\":%.0f,\"duration_s\":%.1f,\"acked_aa\":%llu,\"acked_other\":%llu,"
      "\"errors\":%llu,\"measured\":%.0f,\"throughput_per_s\":%.0f,\"latency_ms\":%s}\n",
      o.connections, o.rate, o.duration_s, static_cast<unsigned long long>(st.aa.load()),
      static_cast<unsigned long long>(st.other.load()), static_cast<unsigned long long>(st.errors.load()), measured,
      measured / o.duration_s, yilian::loadgen::latency_json(l).c_str());
  return st.errors.load() == 0 && st.other.load() == 0 ? 0 : 1;
}
