#include "engine/store/wal_checkpointer.h"

#include <algorithm>
#include <utility>

#include <sqlite3.h>

#include "engine/core/thread.h"

namespace yilian::store::sql {

result<std::unique_ptr<wal_checkpointer>> wal_checkpointer::start(sqlite3* writer, const std::filesystem::path& file,
                                                                  wal_checkpoint_options options) {
  if (options.every_frames < 1 || options.hard_limit_frames < options.every_frames) {
    return fail(errc::invalid_argument, "wal checkpoint: every_frames must be >= 1 and <= hard_limit_frames");
  }
  // PASSIVE checkpoints never wait on a busy handler.
  auto own = open_db(file, false, 0);
  if (!own) return std::unexpected(own.error());
  if (auto r = exec(own->get(), "PRAGMA synchronous=FULL"); !r) return std::unexpected(r.error());
  if (auto r = exec(writer, "PRAGMA wal_autocheckpoint=0"); !r) return std::unexpected(r.error());
  std::unique_ptr<wal_checkpointer> c(new wal_checkpointer(writer, std::move(*own), std::move(options)));
  sqlite3_wal_hook(writer, &wal_checkpointer::on_commit, c.get());
  c->thread_ = std::thread([p = c.get()] { p->run(); });
  return c;
}

wal_checkpointer::wal_checkpointer(sqlite3* writer, db_ptr own, wal_checkpoint_options options)
    : writer_(writer), options_(std::move(options)), db_(std::move(own)) {}

wal_checkpointer::~wal_checkpointer() { stop(); }

void wal_checkpointer::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
    sqlite3_wal_hook(writer_, nullptr, nullptr);
  }
  db_.reset();
}

// Writer thread, inside its commit.
int wal_checkpointer::on_commit(void* self, sqlite3*, const char*, int frames) {
  auto* c = static_cast<wal_checkpointer*>(self);
  c->wal_frames_ = frames;
  // A shorter WAL than at the last commit: it restarted from its beginning,
  // and what the last checkpoint saw was the old one.
  if (frames < c->last_frames_) c->seen_.store(0, std::memory_order_relaxed);
  c->last_frames_ = frames;
  if (frames - std::min(frames, c->seen_.load(std::memory_order_relaxed)) >= c->options_.every_frames) {
    {
      std::lock_guard lock(c->mu_);
      c->wanted_ = true;
    }
    c->cv_.notify_one();
  }
  return SQLITE_OK;
}

void wal_checkpointer::run() {
  name_this_thread(options_.thread_name);
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return wanted_ || stopping_; });
      if (stopping_) return;
      wanted_ = false;
    }
    // PASSIVE never blocks the writer or readers. Repeat while it copies
    // something and frames remain: each round copies what the writer added
    // during the previous one, and a round that ends with nothing left lets
    // the writer restart the WAL from its beginning. A round that copies
    // nothing new (a reader still needs the old pages) ends it.
    int before = -1;
    for (int round = 0; round < 8; ++round) {
      int log_frames = 0;
      int copied = 0;
      const int rc = sqlite3_wal_checkpoint_v2(db_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log_frames, &copied);
      runs_.fetch_add(1, std::memory_order_relaxed);
      if (rc != SQLITE_OK) break;
      seen_.store(log_frames, std::memory_order_relaxed);
      if (copied >= log_frames || copied <= before) break;
      before = copied;
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
  }
}

void wal_checkpointer::finish_if_too_long() {
  if (wal_frames_ < options_.hard_limit_frames) return;
  int log_frames = 0;
  int copied = 0;
  // Busy (the background checkpoint holds the checkpoint lock) is fine: it is
  // doing the same work; the next commit looks again.
  runs_.fetch_add(1, std::memory_order_relaxed);
  if (sqlite3_wal_checkpoint_v2(writer_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log_frames, &copied) != SQLITE_OK) return;
  seen_.store(log_frames, std::memory_order_relaxed);
  if (copied >= log_frames) wal_frames_ = 0;
}

}  // namespace yilian::store::sql
