// store::sql::wal_checkpointer on a real SQLite file in WAL mode: when it
// checkpoints (pages added since it last looked, not the WAL's length), that
// the pages reach the database file, and the writer's own checkpoint past the
// hard limit.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include <sqlite3.h>

#include "engine/store/sqlite.h"
#include "engine/store/wal_checkpointer.h"
#include "tests/support/eventually.h"
#include "tests/support/temp_dir.h"

namespace {

using namespace yilian;
using namespace std::chrono_literals;

struct wal_file {
  yilian::test::temp_dir dir{"yilian-wal-ckpt-test"};
  std::filesystem::path path = dir.file("store.db");
  store::sql::db_ptr writer;
  store::sql::stmt_ptr insert;

  wal_file() {
    auto db = store::sql::open_db(path, true, 1000);
    REQUIRE(db);
    writer = std::move(*db);
    REQUIRE(store::sql::exec(writer.get(), "PRAGMA page_size=4096"));
    REQUIRE(store::sql::query_text(writer.get(), "PRAGMA journal_mode=WAL").value() == "wal");
    REQUIRE(store::sql::exec(writer.get(), "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)"));
    auto s = store::sql::prepare(writer.get(), "INSERT INTO t(v) VALUES(?1)");
    REQUIRE(s);
    insert = std::move(*s);
  }
  // One commit of one row that fills about a page.
  void commit_row() {
    const std::string blob(3000, 'x');
    REQUIRE(store::sql::bind_blob(insert.get(), 1, blob) == SQLITE_OK);
    REQUIRE(store::sql::run(insert.get()) == SQLITE_DONE);
  }
  std::uintmax_t db_size() const { return std::filesystem::file_size(path); }
  // Pages the WAL file holds (header 32 bytes, each frame a 24-byte header and a page).
  std::uintmax_t wal_frames() const { return (std::filesystem::file_size(path.string() + "-wal") - 32) / (24 + 4096); }
};

std::unique_ptr<store::sql::wal_checkpointer> start(wal_file& f, int every, int hard_limit) {
  auto c = store::sql::wal_checkpointer::start(
      f.writer.get(), f.path, {.every_frames = every, .hard_limit_frames = hard_limit, .thread_name = "yl-test-ckpt"});
  REQUIRE(c);
  return std::move(*c);
}

}  // namespace

TEST_CASE("wal_checkpointer: no checkpoint before every_frames pages, then the pages reach the database file",
          "[store][wal]") {
  wal_file f;
  auto c = start(f, 50, 100000);
  const auto empty = f.db_size();
  for (int i = 0; i < 10; ++i) f.commit_row();  // ~10-20 WAL pages
  std::this_thread::sleep_for(100ms);
  CHECK(c->checkpoints_run() == 0);
  CHECK(f.db_size() == empty);
  for (int i = 0; i < 60; ++i) f.commit_row();
  CHECK(yilian::test::eventually([&] { return c->checkpoints_run() >= 1 && f.db_size() > empty + 40 * 4096; }, 10s));
  c->stop();
}

TEST_CASE("wal_checkpointer: a reader that holds the WAL back does not turn every commit into a checkpoint",
          "[store][wal]") {
  wal_file f;
  auto c = start(f, 50, 100000);
  for (int i = 0; i < 80; ++i) f.commit_row();
  REQUIRE(yilian::test::eventually([&] { return c->checkpoints_run() >= 1; }, 10s));
  std::this_thread::sleep_for(50ms);
  // A reader in an open read transaction: what is committed after it began
  // cannot be copied back, and the WAL cannot restart.
  auto reader = store::sql::open_db(f.path, false, 1000);
  REQUIRE(reader);
  REQUIRE(store::sql::exec(reader->get(), "BEGIN"));
  REQUIRE(store::sql::query_int(reader->get(), "SELECT count(*) FROM t").value() == 80);
  const auto before = c->checkpoints_run();
  const auto wal_before = f.wal_frames();
  constexpr int commits = 400;  // each adds a few pages to a WAL of more than 50
  for (int i = 0; i < commits; ++i) {
    f.commit_row();
    if (i % 50 == 0) std::this_thread::sleep_for(5ms);  // let the checkpointer run between commits
  }
  std::this_thread::sleep_for(100ms);
  const auto runs = c->checkpoints_run() - before;
  const auto added = f.wal_frames() - wal_before;  // the WAL cannot restart: it only grows
  // One look per 50 pages added (and at most one more round each), not one
  // per commit as a trigger on the WAL's length made it.
  CHECK(added >= commits);
  CHECK(runs >= 1);
  CHECK(runs <= 2 * (added / 50 + 1));
  CHECK(runs < commits / 4);
  REQUIRE(store::sql::exec(reader->get(), "COMMIT"));
  c->stop();
}

TEST_CASE("wal_checkpointer: the writer checkpoints itself only past the hard limit", "[store][wal]") {
  wal_file f;
  // Background checkpoints far apart: the hard limit is what this test sees.
  auto c = start(f, 100000, 100000);
  for (int i = 0; i < 30; ++i) f.commit_row();
  c->finish_if_too_long();
  CHECK(c->checkpoints_run() == 0);
  c->stop();

  auto low = start(f, 40, 40);
  const auto size = f.db_size();
  for (int i = 0; i < 30; ++i) f.commit_row();  // the WAL now holds more than 40 pages
  low->finish_if_too_long();
  CHECK(low->checkpoints_run() >= 1);
  CHECK(f.db_size() > size);
  low->stop();
}
