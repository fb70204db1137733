// The bus conformance suite against the embedded log. Each fixture owns a
// fresh temporary directory; open() reopens the same log file there.
//
// open_unreachable opens that same file and then takes SQLite's write lock on
// it from a separate raw connection (BEGIN EXCLUSIVE) for the life of the
// returned bus: every publish then really runs into SQLITE_BUSY and has to
// give up after its publish_timeout. Topics created earlier through open()
// exist in it, so a publish fails for the locked store, not for an unknown
// topic. Do not keep a bus from open() alive meanwhile: the file has one owner.
#include <sqlite3.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "engine/bus/embedded_log.h"
#include "tests/support/bus_fixture.h"

namespace yilian::testing {
namespace {

using namespace std::chrono_literals;
namespace yb = yilian::bus;

// Forwards everything to the log; only holds the lock connection alongside it.
class locked_bus final : public yb::bus {
 public:
  locked_bus(std::unique_ptr<yb::bus> inner, sqlite3* locker) : inner_(std::move(inner)), locker_(locker) {}
  ~locked_bus() override {
    inner_.reset();  // its shutdown gives up on anything queued (the file is still locked)
    sqlite3_exec(locker_, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(locker_);
  }
  std::string_view kind() const noexcept override { return inner_->kind(); }
  result<void> ensure_topics(std::span<const yb::topic_spec> topics) override { return inner_->ensure_topics(topics); }
  result<std::int32_t> partitions(std::string_view topic) override { return inner_->partitions(topic); }
  void publish(yb::message msg, yb::publish_handler done) override { inner_->publish(std::move(msg), std::move(done)); }
  result<std::unique_ptr<yb::consumer>> subscribe(yb::consumer_options options) override {
    return inner_->subscribe(std::move(options));
  }
  result<void> flush(std::chrono::milliseconds timeout) override { return inner_->flush(timeout); }
  result<void> check_ready(std::chrono::milliseconds timeout) override { return inner_->check_ready(timeout); }

 private:
  std::unique_ptr<yb::bus> inner_;
  sqlite3* locker_;
};

class embedded_fixture final : public bus_fixture {
 public:
  embedded_fixture() {
    std::string pattern = (std::filesystem::temp_directory_path() / "yilian-conformance-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
    dir_ = pattern;
  }
  ~embedded_fixture() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string name() const override { return "embedded"; }

  std::unique_ptr<yb::bus> open() override { return open_log(5s); }

  std::unique_ptr<yb::bus> open_unreachable(std::chrono::milliseconds publish_timeout) override {
    auto log = open_log(publish_timeout);
    sqlite3* locker = nullptr;
    if (sqlite3_open(db_path().c_str(), &locker) != SQLITE_OK ||
        sqlite3_exec(locker, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) != SQLITE_OK) {
      const std::string why = locker != nullptr ? sqlite3_errmsg(locker) : "out of memory";
      sqlite3_close(locker);
      throw std::runtime_error("cannot write-lock " + db_path().string() + ": " + why);
    }
    return std::make_unique<locked_bus>(std::move(log), locker);
  }

  std::string fresh_name(std::string_view base) override {
    return std::string(base) + "-" + std::to_string(++names_);
  }

  // Group changes are immediate in process; this only bounds the polling loops.
  std::chrono::milliseconds settle_time() const override { return 2s; }

 private:
  std::filesystem::path db_path() const { return dir_ / "log.db"; }

  std::unique_ptr<yb::bus> open_log(std::chrono::milliseconds publish_timeout) {
    auto log = yb::open_embedded_log(
        yb::embedded_log_options{.path = db_path(), .default_partitions = 4, .publish_timeout = publish_timeout});
    if (!log) throw std::runtime_error("open embedded log: " + log.error().describe());
    return std::move(*log);
  }

  std::filesystem::path dir_;
  std::atomic<int> names_{0};
};

}  // namespace

std::unique_ptr<bus_fixture> make_bus_fixture() { return std::make_unique<embedded_fixture>(); }

}  // namespace yilian::testing
