#pragma once
// An SQLite VFS that passes everything to the default one, and fails writes
// and syncs on demand with SQLITE_IOERR (or SQLITE_FULL): what a full or
// failing disk looks like to the store.

#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>

namespace test {

class FaultyVfs {
public:
    static constexpr char const* name = "faulty";

    /// Registers the VFS once (not as the default).
    static FaultyVfs& instance() {
        static FaultyVfs vfs;
        return vfs;
    }

    /// While true, every write and sync fails.
    std::atomic<bool> failing{false};
    /// While true, every read fails with SQLITE_IOERR_READ.
    std::atomic<bool> failing_reads{false};
    /// While not negative, reads of a database file (not its WAL) at or past
    /// this offset fail with SQLITE_IOERR_READ: pages a scan reaches and an
    /// open does not.
    std::atomic<sqlite3_int64> failing_reads_from{-1};
    /// The next this many syncs fail with SQLITE_IOERR_FSYNC (writes still
    /// work): a COMMIT whose frames are all in the WAL, unsynced.
    std::atomic<int> failing_syncs{0};
    /// The code a failing write returns: SQLITE_IOERR_WRITE or SQLITE_FULL.
    std::atomic<int> error{SQLITE_IOERR_WRITE};

    /// A slow disk: from hold_reads() to let_reads_go(), every read waits.
    void hold_reads() {
        std::lock_guard lock(hold_mutex_);
        holding_ = true;
    }
    /// A slow disk for one reader: from hold_my_reads(), called on the thread
    /// whose reads are to wait (a store reads on its caller's thread), to
    /// let_reads_go(), that thread's reads of pages wait (after its read
    /// transaction took its snapshot) and every other read goes on.
    void hold_my_reads() {
        std::lock_guard lock(hold_mutex_);
        my_reads_held() = true;
        holding_one_ = true;
    }
    void let_reads_go() {
        {
            std::lock_guard lock(hold_mutex_);
            holding_ = false;
            holding_one_ = false;
        }
        hold_cv_.notify_all();
    }
    /// Waits until some read is held; false at the timeout.
    bool wait_for_held_read(std::chrono::milliseconds timeout) {
        std::unique_lock lock(hold_mutex_);
        return hold_cv_.wait_for(lock, timeout, [this] { return held_ > 0; });
    }

private:
    struct File {
        sqlite3_file base;
        sqlite3_file* real;
        bool main_db;
    };

    FaultyVfs() {
        real_ = sqlite3_vfs_find(nullptr);
        vfs_ = *real_;
        vfs_.zName = name;
        vfs_.szOsFile = static_cast<int>(sizeof(File)) + real_->szOsFile;
        vfs_.xOpen = &open;
        vfs_.pAppData = this;
        methods_ = {};
        sqlite3_vfs_register(&vfs_, 0);
    }

    static FaultyVfs& self(sqlite3_file*) { return instance(); }
    static sqlite3_file* real(sqlite3_file* f) { return reinterpret_cast<File*>(f)->real; }

    static int open(sqlite3_vfs* vfs, char const* path, sqlite3_file* file, int flags, int* out_flags) {
        auto& me = *static_cast<FaultyVfs*>(vfs->pAppData);
        auto* wrapped = reinterpret_cast<File*>(file);
        wrapped->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + sizeof(File));
        wrapped->main_db = (flags & SQLITE_OPEN_MAIN_DB) != 0;
        int const rc = me.real_->xOpen(me.real_, path, wrapped->real, flags, out_flags);
        if (rc != SQLITE_OK) {
            wrapped->base.pMethods = nullptr;
            return rc;
        }
        if (me.methods_.iVersion == 0) {
            me.methods_ = *wrapped->real->pMethods;
            me.methods_.xClose = [](sqlite3_file* f) { return real(f)->pMethods->xClose(real(f)); };
            me.methods_.xRead = [](sqlite3_file* f, void* b, int n, sqlite3_int64 o) {
                self(f).wait_while_held(o);
                if (self(f).failing_reads) return SQLITE_IOERR_READ;
                sqlite3_int64 const from = self(f).failing_reads_from;
                if (from >= 0 && o >= from && reinterpret_cast<File*>(f)->main_db) return SQLITE_IOERR_READ;
                return real(f)->pMethods->xRead(real(f), b, n, o);
            };
            me.methods_.xWrite = [](sqlite3_file* f, void const* b, int n, sqlite3_int64 o) {
                if (self(f).failing) return self(f).error.load();
                return real(f)->pMethods->xWrite(real(f), b, n, o);
            };
            me.methods_.xTruncate = [](sqlite3_file* f, sqlite3_int64 s) { return real(f)->pMethods->xTruncate(real(f), s); };
            me.methods_.xSync = [](sqlite3_file* f, int sync_flags) {
                if (self(f).failing) return SQLITE_IOERR_FSYNC;
                for (int left = self(f).failing_syncs.load(); left > 0;)
                    if (self(f).failing_syncs.compare_exchange_weak(left, left - 1)) return SQLITE_IOERR_FSYNC;
                return real(f)->pMethods->xSync(real(f), sync_flags);
            };
            me.methods_.xFileSize = [](sqlite3_file* f, sqlite3_int64* s) { return real(f)->pMethods->xFileSize(real(f), s); };
            me.methods_.xLock = [](sqlite3_file* f, int l) { return real(f)->pMethods->xLock(real(f), l); };
            me.methods_.xUnlock = [](sqlite3_file* f, int l) { return real(f)->pMethods->xUnlock(real(f), l); };
            me.methods_.xCheckReservedLock = [](sqlite3_file* f, int* r) { return real(f)->pMethods->xCheckReservedLock(real(f), r); };
            me.methods_.xFileControl = [](sqlite3_file* f, int op, void* a) { return real(f)->pMethods->xFileControl(real(f), op, a); };
            me.methods_.xSectorSize = [](sqlite3_file* f) { return real(f)->pMethods->xSectorSize(real(f)); };
            me.methods_.xDeviceCharacteristics = [](sqlite3_file* f) { return real(f)->pMethods->xDeviceCharacteristics(real(f)); };
            me.methods_.xShmMap = [](sqlite3_file* f, int p, int s, int e, void volatile** m) { return real(f)->pMethods->xShmMap(real(f), p, s, e, m); };
            me.methods_.xShmLock = [](sqlite3_file* f, int o, int n, int fl) { return real(f)->pMethods->xShmLock(real(f), o, n, fl); };
            me.methods_.xShmBarrier = [](sqlite3_file* f) { real(f)->pMethods->xShmBarrier(real(f)); };
            me.methods_.xShmUnmap = [](sqlite3_file* f, int d) { return real(f)->pMethods->xShmUnmap(real(f), d); };
            me.methods_.xFetch = [](sqlite3_file* f, sqlite3_int64 o, int n, void** p) { return real(f)->pMethods->xFetch(real(f), o, n, p); };
            me.methods_.xUnfetch = [](sqlite3_file* f, sqlite3_int64 o, void* p) { return real(f)->pMethods->xUnfetch(real(f), o, p); };
        }
        wrapped->base.pMethods = &me.methods_;
        return SQLITE_OK;
    }

    static bool& my_reads_held() {
        thread_local bool held = false;
        return held;
    }

    // A held thread's reads wait from past the files' headers (offset 32):
    // once its read transaction has begun, so its snapshot is taken.
    void wait_while_held(sqlite3_int64 offset) {
        std::unique_lock lock(hold_mutex_);
        if (!holding_ && !(holding_one_ && my_reads_held() && offset >= 32)) return;
        ++held_;
        hold_cv_.notify_all();
        hold_cv_.wait(lock, [this] { return !holding_ && !holding_one_; });
        --held_;
    }

    std::mutex hold_mutex_;
    std::condition_variable hold_cv_;
    bool holding_ = false;     // Owned by: hold_mutex_
    bool holding_one_ = false; // Owned by: hold_mutex_; the reads of the threads that asked
    int held_ = 0;         // Owned by: hold_mutex_; reads waiting

    sqlite3_vfs* real_;
    sqlite3_vfs vfs_;
    sqlite3_io_methods methods_;
};

} // namespace test
