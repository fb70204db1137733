#include <catch2/catch.hpp>

#include <limits>
#include <stdexcept>
#include <thread>
#include <vector>

#include "engine/core/metrics.h"

using namespace yilian::metrics;

TEST_CASE("the registry renders counters, gauges and histograms in text format 0.0.4", "[unit]") {
  registry reg;
  auto& req = reg.add_counter("http_requests_total", "Requests.\nSecond line with \\ backslash", {"method", "path"});
  req.with({"POST", "c\\d\ne"}).inc(0.5);
  req.with({"GET", "/a\"b"}).inc();
  req.with({"GET", "/a\"b"}).inc(2);
  reg.add_gauge("queue_depth", "Depth.").get().set(-3);
  auto& lat = reg.add_histogram("latency_seconds", "Latency.", {"route"}, {0.25, 0.5, 1});
  auto& x = lat.with({"/x"});
  for (const double v : {0.125, 0.25, 0.375, 2.0}) x.observe(v);

  CHECK(reg.render() ==
        "# HELP http_requests_total Requests.\\nSecond line with \\\\ backslash\n"
        "# TYPE http_requests_total counter\n"
        "http_requests_total{method=\"GET\",path=\"/a\\\"b\"} 3\n"
        "http_requests_total{method=\"POST\",path=\"c\\\\d\\ne\"} 0.5\n"
        "# HELP latency_seconds Latency.\n"
        "# TYPE latency_seconds histogram\n"
        "latency_seconds_bucket{route=\"/x\",le=\"0.25\"} 2\n"
        "latency_seconds_bucket{route=\"/x\",le=\"0.5\"} 3\n"
        "latency_seconds_bucket{route=\"/x\",le=\"1\"} 3\n"
        "latency_seconds_bucket{route=\"/x\",le=\"+Inf\"} 4\n"
        "latency_seconds_sum{route=\"/x\"} 2.75\n"
        "latency_seconds_count{route=\"/x\"} 4\n"
        "# HELP queue_depth Depth.\n"
        "# TYPE queue_depth gauge\n"
        "queue_depth -3\n");
}

TEST_CASE("an unlabelled histogram renders its buckets with only the le label", "[unit]") {
  registry reg;
  auto& h = reg.add_histogram("size_bytes", "Sizes.", {}, {100, 1000});
  h.get().observe(50);
  h.get().observe(5000);
  CHECK(reg.render() ==
        "# HELP size_bytes Sizes.\n"
        "# TYPE size_bytes histogram\n"
        "size_bytes_bucket{le=\"100\"} 1\n"
        "size_bytes_bucket{le=\"1000\"} 1\n"
        "size_bytes_bucket{le=\"+Inf\"} 2\n"
        "size_bytes_sum 5050\n"
        "size_bytes_count 2\n");
}

TEST_CASE("unlabelled families render as zero at once, labelled ones only after a child exists", "[unit]") {
  registry reg;
  reg.add_counter("a_total", "A.");
  auto& b = reg.add_counter("b_total", "B.", {"topic"});
  CHECK(reg.render() == "# HELP a_total A.\n# TYPE a_total counter\na_total 0\n");
  b.with({"t"});
  CHECK(reg.render() ==
        "# HELP a_total A.\n# TYPE a_total counter\na_total 0\n"
        "# HELP b_total B.\n# TYPE b_total counter\nb_total{topic=\"t\"} 0\n");
}

TEST_CASE("callback gauges are evaluated at scrape time and leave with their handle", "[unit]") {
  registry reg;
  double lag = 5;
  auto h1 = reg.add_callback_gauge("consumer_lag", "Records not yet processed.", {"group", "partition"}, [&] {
    return std::vector<sample>{{{"g1", "0"}, lag}, {{"g1", "1"}, 0}, {{"wrong-arity"}, 9}};
  });
  auto h2 = reg.add_callback_gauge("consumer_lag", "Records not yet processed.", {"group", "partition"},
                                   [] { return std::vector<sample>{{{"g2", "0"}, 1.5}}; });
  const std::string both =
      "# HELP consumer_lag Records not yet processed.\n"
      "# TYPE consumer_lag gauge\n"
      "consumer_lag{group=\"g1\",partition=\"0\"} 5\n"
      "consumer_lag{group=\"g1\",partition=\"1\"} 0\n"
      "consumer_lag{group=\"g2\",partition=\"0\"} 1.5\n";
  CHECK(reg.render() == both);
  lag = 7;
  CHECK(reg.render().find("consumer_lag{group=\"g1\",partition=\"0\"} 7\n") != std::string::npos);
  h1.reset();
  CHECK(reg.render() ==
        "# HELP consumer_lag Records not yet processed.\n"
        "# TYPE consumer_lag gauge\n"
        "consumer_lag{group=\"g2\",partition=\"0\"} 1.5\n");
  {
    const auto moved = std::move(h2);
    CHECK(reg.render().find("g2") != std::string::npos);
  }
  CHECK(reg.render().empty());
}

TEST_CASE("a callback that throws contributes nothing and does not break the scrape", "[unit]") {
  registry reg;
  reg.add_counter("ok_total", "Ok.");
  auto h = reg.add_callback_gauge("broken", "Broken.", {}, []() -> std::vector<sample> {
    throw std::runtime_error("no broker");
  });
  CHECK(reg.render() == "# HELP ok_total Ok.\n# TYPE ok_total counter\nok_total 0\n");
}

TEST_CASE("sample values are formatted like the Prometheus clients do", "[unit]") {
  struct row {
    double v;
    std::string text;
  };
  const auto inf = std::numeric_limits<double>::infinity();
  const auto rows = std::vector<row>{
      {0, "0"},          {1, "1"},         {-1, "-1"},        {42, "42"},       {0.5, "0.5"},
      {0.005, "0.005"},  {2.5, "2.5"},     {1e15, "1e+15"},   {123456789, "123456789"},
      {1e-7, "1e-07"},   {inf, "+Inf"},    {-inf, "-Inf"},    {std::nan(""), "NaN"},
  };
  for (const auto& r : rows) {
    INFO(r.text);
    CHECK(format_value(r.v) == r.text);
  }
}

TEST_CASE("counters never go down", "[unit]") {
  registry reg;
  auto& c = reg.add_counter("c_total", "C.").get();
  c.inc(2);
  c.inc(-1);
  c.inc(std::nan(""));
  CHECK(c.value() == 2);
}

TEST_CASE("registration mistakes are reported at once", "[unit]") {
  registry reg;
  auto& c = reg.add_counter("x_total", "X.", {"a"});
  SECTION("registering the same counter again returns the same family") {
    CHECK(&reg.add_counter("x_total", "X again.", {"a"}) == &c);
  }
  SECTION("the same name with another type or labels is a bug") {
    CHECK_THROWS_AS(reg.add_gauge("x_total", "X."), std::logic_error);
    CHECK_THROWS_AS(reg.add_counter("x_total", "X.", {"b"}), std::logic_error);
    reg.add_histogram("h", "H.", {}, {1, 2});
    CHECK_THROWS_AS(reg.add_histogram("h", "H.", {}, {1, 3}), std::logic_error);
  }
  SECTION("bad names are rejected") {
    CHECK_THROWS_AS(reg.add_counter("1bad", "X."), std::invalid_argument);
    CHECK_THROWS_AS(reg.add_counter("bad-name", "X."), std::invalid_argument);
    CHECK_THROWS_AS(reg.add_counter("ok", "X.", {"__reserved"}), std::invalid_argument);
    CHECK_THROWS_AS(reg.add_counter("ok", "X.", {"a", "a"}), std::invalid_argument);
    CHECK_THROWS_AS(reg.add_histogram("ok_h", "X.", {"le"}), std::invalid_argument);
    CHECK_THROWS_AS(reg.add_histogram("ok_h", "X.", {}, {1, 1}), std::invalid_argument);
    CHECK_NOTHROW(reg.add_counter("ns:sub_total", "Colons are allowed in names."));
  }
  SECTION("a wrong number of label values is a bug") {
    CHECK_THROWS_AS(c.with({}), std::invalid_argument);
    CHECK_THROWS_AS(c.with({"1", "2"}), std::invalid_argument);
  }
}

TEST_CASE("children are shared across threads and updates are not lost", "[unit]") {
  registry reg;
  auto& fam = reg.add_counter("hits_total", "Hits.", {"worker"});
  auto& h = reg.add_histogram("obs", "Obs.", {}, {1});
  constexpr int threads = 8;
  constexpr int per_thread = 10000;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      auto& mine = fam.with({t % 2 == 0 ? "even" : "odd"});  // looked up once, then lock-free
      for (int i = 0; i < per_thread; ++i) {
        mine.inc();
        h.get().observe(0.5);
        if (i % 1000 == 0) (void)reg.render();  // scrapes race with updates
      }
    });
  }
  for (auto& t : pool) t.join();
  CHECK(fam.with({"even"}).value() == threads / 2 * per_thread);
  CHECK(fam.with({"odd"}).value() == threads / 2 * per_thread);
  const auto s = h.get().collect();
  CHECK(s.count == threads * per_thread);
  CHECK(s.cumulative.front() == threads * per_thread);
  CHECK(s.sum == Approx(threads * per_thread * 0.5));
}

TEST_CASE("bucket helpers", "[unit]") {
  CHECK(default_buckets() == std::vector<double>{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10});
  CHECK(exponential_buckets(1, 2, 4) == std::vector<double>{1, 2, 4, 8});
  CHECK_THROWS_AS(exponential_buckets(0, 2, 4), std::invalid_argument);
}
