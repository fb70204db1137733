// yilian::store::sql::wal_checkpointer — checkpoints a store's WAL (copies it
// back into the database file and fsyncs that) on a thread of its own, for
// the SQLite files that one writer thread appends to: the embedded log and
// the ingest store. Done inline, a checkpoint stalled every few dozen commits
// for tens of milliseconds; on its own thread the writer keeps committing.
//
// A checkpoint runs once `every_frames` pages were added to the WAL since the
// last one looked at it — not whenever the WAL is long. Under load the WAL
// often cannot restart from its beginning (that needs a complete checkpoint
// and no reader still on it just when the writer begins), so it stays long;
// a trigger on its length then ran a checkpoint after nearly every commit,
// each copying a few pages and adding two fsyncs that the writer's own fsync
// queued behind (measured: as many checkpoint fsyncs as commits).
//
// The WAL only restarts after a complete checkpoint, which a background one
// may never reach while the writer keeps adding; past `hard_limit_frames` the
// writer finishes it itself between two transactions (finish_if_too_long).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

#include "engine/core/error.h"
#include "engine/store/sqlite.h"

namespace yilian::store::sql {

struct wal_checkpoint_options {
  int every_frames = 1000;       // pages added since the last checkpoint
  int hard_limit_frames = 4000;  // WAL length at which the writer checkpoints itself
  const char* thread_name = "yl-wal-ckpt";  // at most 15 characters
};

class wal_checkpointer {
 public:
  // Opens its own connection to `file` (synchronous=FULL: the database file
  // is fsync'd before the WAL may be reused), turns the writer connection's
  // automatic checkpoints off and takes its WAL hook. `writer` must stay open
  // until stop().
  static result<std::unique_ptr<wal_checkpointer>> start(sqlite3* writer, const std::filesystem::path& file,
                                                         wal_checkpoint_options options);
  ~wal_checkpointer();
  wal_checkpointer(const wal_checkpointer&) = delete;
  wal_checkpointer& operator=(const wal_checkpointer&) = delete;

  // Writer thread, between transactions: when the WAL is past the hard
  // limit, checkpoints through the writer's connection (no commit can come
  // in between, so it can complete and let the WAL restart).
  void finish_if_too_long();

  // Checkpoint calls made so far (background rounds and the writer's own).
  std::uint64_t checkpoints_run() const { return runs_.load(std::memory_order_relaxed); }

  // Stops the thread (a checkpoint in progress finishes first) and gives the
  // writer connection its WAL hook back. Call once the writer thread has
  // stopped; idempotent.
  void stop();

 private:
  wal_checkpointer(sqlite3* writer, db_ptr own, wal_checkpoint_options options);
  static int on_commit(void* self, sqlite3* db, const char* name, int frames);
  void run();

  sqlite3* writer_;
  wal_checkpoint_options options_;
  db_ptr db_;  // the checkpointer's connection
  std::mutex mu_;
  std::condition_variable cv_;
  bool wanted_ = false;
  bool stopping_ = false;
  // Writer thread only (its commits and finish_if_too_long):
  int wal_frames_ = 0;   // the WAL's length after the last commit; 0 once the writer completed a checkpoint
  int last_frames_ = 0;  // the WAL's length after the last commit (a shorter one: it restarted)
  std::atomic<int> seen_{0};  // the WAL's length when a checkpoint last looked at it (both threads)
  std::atomic<std::uint64_t> runs_{0};
  std::thread thread_;
};

}  // namespace yilian::store::sql
