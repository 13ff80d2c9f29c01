#include "secure_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace okta_sidecar::tls::detail {
namespace {

constexpr std::size_t max_file_bytes = std::size_t{1024} * 1024;

[[noreturn]] void refuse(const std::string& key, const std::string& file, const std::string& why) {
  throw std::runtime_error(key + " " + file + ": " + why);
}

std::string mode_text(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

int open_no_follow(const std::string& key, const std::string& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
  if (fd >= 0) return fd;
  if (errno == ELOOP) {
    refuse(key, file,
           "is a symbolic link; the sidecar opens key and certificate files only directly (copy the file "
           "in place, e.g. with `install -m 0600`)");
  }
  refuse(key, file, std::string("cannot be read (") + std::strerror(errno) + ")");
}

std::string read_fd(const std::string& key, const std::string& file, int fd) {
  std::string data;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      refuse(key, file, std::string("cannot be read (") + std::strerror(err) + ")");
    }
    if (n == 0) break;
    data.append(buf, static_cast<std::size_t>(n));
    if (data.size() > max_file_bytes) {
      ::close(fd);
      refuse(key, file, "is larger than 1 MiB; it should hold one PEM block");
    }
  }
  ::close(fd);
  return data;
}

struct stat checked_stat(const std::string& key, const std::string& file, int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    refuse(key, file, std::string("cannot be examined (") + std::strerror(err) + ")");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    refuse(key, file, "is not a regular file");
  }
  return st;
}

}  // namespace

std::string key_file_problem(uid_t owner, mode_t mode, uid_t running_user, const std::string& file) {
  const bool group_read_at_most = (mode & (S_IWGRP | S_IXGRP | S_IRWXO)) == 0;
  const bool private_mode = (mode & (S_IRWXG | S_IRWXO)) == 0;
  if (owner == 0 && group_read_at_most) return {};  // root-managed, shared with the key's group
  if (owner == running_user && private_mode) return {};
  if (owner != running_user && owner != 0) {
    return "belongs to user id " + std::to_string(owner) + ", not to the user running the sidecar (" +
           std::to_string(running_user) + ") or root; run `chown " + std::to_string(running_user) + " " +
           file + "`";
  }
  if (owner == 0) {
    return "is accessible by others or writable by its group (mode " + mode_text(mode) +
           "); the key signs certificates every client trusts: run `chmod 600 " + file +
           "` (or 640 to share it with the file's group)";
  }
  return "is accessible by group or others (mode " + mode_text(mode) +
         "); the key signs certificates every client trusts: run `chmod 600 " + file +
         "` (for a Kubernetes Secret, set defaultMode: 0400)";
}

std::string read_private_file(const std::string& key, const std::string& file) {
  const int fd = open_no_follow(key, file);
  const struct stat st = checked_stat(key, file, fd);
  if (auto why = key_file_problem(st.st_uid, st.st_mode, ::geteuid(), file); !why.empty()) {
    ::close(fd);
    refuse(key, file, why);
  }
  return read_fd(key, file, fd);
}

std::string read_public_file(const std::string& key, const std::string& file) {
  const int fd = open_no_follow(key, file);
  checked_stat(key, file, fd);
  return read_fd(key, file, fd);
}

// O_EXCL: never overwrite (a replica racing us, or a file that appeared since we looked).
// The mode is given at creation and forced again with fchmod, so no umask and no window
// leaves the key readable by anyone else even for an instant.
void write_new_file(const std::string& key, const std::string& file, const std::string& data, mode_t mode) {
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    refuse(key, file, std::string("cannot be created (") + std::strerror(errno) + ")");
  }
  auto fail = [&](const char* what) {
    const int err = errno;
    ::close(fd);
    ::unlink(file.c_str());
    refuse(key, file, std::string(what) + " (" + std::strerror(err) + ")");
  };
  if (::fchmod(fd, mode) != 0) fail("cannot set its mode");
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot be written");
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) fail("cannot be flushed to disk");
  ::close(fd);
}

void make_private_directory(const std::string& key, const std::string& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) return;
  const auto parent = std::filesystem::path(dir).lexically_normal().parent_path();
  if (!parent.empty()) {
    std::filesystem::create_directories(parent, ec);
    if (ec) refuse(key, dir, "cannot create directory " + parent.string() + " (" + ec.message() + ")");
  }
  if (::mkdir(dir.c_str(), 0700) != 0) {
    refuse(key, dir, "cannot create directory " + dir + " (" + std::strerror(errno) + ")");
  }
  // mkdir's mode passes through the umask, which can only remove bits: 0700 stays 0700 or less.
}

bool file_exists(const std::string& key, const std::string& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) refuse(key, file, "is not a regular file");
    return true;
  }
  if (errno == ENOENT || errno == ENOTDIR) return false;  // creation will name what it cannot make
  refuse(key, file, std::string("cannot be accessed (") + std::strerror(errno) + ")");
}

}  // namespace okta_sidecar::tls::detail
