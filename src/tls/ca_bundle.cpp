#include "okta_sidecar/tls/ca_bundle.hpp"

#include <fcntl.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace okta_sidecar::tls {

std::string read_system_roots(std::string& pem) {
  const char* env = std::getenv(X509_get_default_cert_file_env());
  const std::string file = env && *env ? env : X509_get_default_cert_file();
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    pem.clear();
    return {};
  }
  std::ostringstream s;
  s << in.rdbuf();
  pem = s.str();
  return file;
}

std::string make_ca_bundle(const std::string& system_roots_pem, const std::string& ca_pem) {
  std::string out = system_roots_pem;
  if (!out.empty() && out.back() != '\n') out += '\n';
  out += ca_pem;
  if (!out.empty() && out.back() != '\n') out += '\n';
  return out;
}

void write_public_file(const std::string& file, const std::string& content) {
  const std::string tmp = file + ".tmp";
  auto fail = [&](const std::string& what) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error(file + ": cannot " + what + " (" + std::strerror(err) + ")");
  };
  ::unlink(tmp.c_str());  // a leftover from a crash
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) fail("be written");
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      fail("be written");
    }
    done += static_cast<std::size_t>(n);
  }
  // The mode is forced, whatever the umask (systemd units often set UMask=0077).
  if (::fchmod(fd, 0644) != 0 || ::fsync(fd) != 0) {
    ::close(fd);
    fail("be written");
  }
  ::close(fd);
  if (::rename(tmp.c_str(), file.c_str()) != 0) fail("be replaced");
}

}  // namespace okta_sidecar::tls
