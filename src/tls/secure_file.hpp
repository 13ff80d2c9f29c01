#pragma once
// Reading and creating the files that hold secrets (the CA key, the fingerprint key): internal
// to the tls module. Issue 14: a key is opened without following a symbolic link and judged on
// the open descriptor (fstat), so nothing can swap the file between the check and the read.
#include <sys/types.h>

#include <string>

namespace okta_sidecar::tls::detail {

// Whether a key file's owner and mode are acceptable, PostgreSQL's rule for ssl_key_file: owned
// by the running user and not accessible by group or others, or owned by root and at most
// group-readable (a root-managed secret shared with the service's group). "" when acceptable,
// else the reason with the fix. Pure, for the tests.
std::string key_file_problem(uid_t owner, mode_t mode, uid_t running_user, const std::string& file);

// Reads a secret file (at most 1 MiB): O_NOFOLLOW, then fstat on the descriptor for the type,
// owner and mode. Throws std::runtime_error "<key> <file>: <why>".
std::string read_private_file(const std::string& key, const std::string& file);

// Reads a public file (a certificate): no owner rule, but no symbolic link either.
std::string read_public_file(const std::string& key, const std::string& file);

// Creates `file` with `mode` (O_EXCL | O_NOFOLLOW, fchmod, fsync); never overwrites.
void write_new_file(const std::string& key, const std::string& file, const std::string& data, mode_t mode);

// Creates `dir` (and missing parents) if absent; the last component is made 0700: it holds
// the private keys. An existing directory is left as it is.
void make_private_directory(const std::string& key, const std::string& dir);

// Whether `file` exists as a regular file (a link to one counts: the open refuses it later).
bool file_exists(const std::string& key, const std::string& file);

}  // namespace okta_sidecar::tls::detail
