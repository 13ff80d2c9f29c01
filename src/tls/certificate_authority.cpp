#include "okta_sidecar/tls/certificate_authority.hpp"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <utility>

#include "openssl_util.hpp"

namespace okta_sidecar::tls {
namespace {

using detail::take_openssl_error;

constexpr long ca_validity_days = 3650;
// Back-dating absorbs clock skew between this host and the clients that will check the chain.
constexpr long backdate_seconds = 3600;

struct bio_deleter {
  void operator()(BIO* bio) const noexcept { BIO_free(bio); }
};
using bio_ptr = std::unique_ptr<BIO, bio_deleter>;

[[noreturn]] void refuse(const std::string& key, const std::string& file, const std::string& why) {
  throw std::runtime_error(key + " " + file + ": " + why);
}

// Whether `file` exists; any answer other than "yes" or "no such file" is an error to report.
bool file_exists(const std::string& key, const std::string& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) {
      refuse(key, file, "is not a regular file");
    }
    return true;
  }
  if (errno == ENOENT || errno == ENOTDIR) {
    return false;  // creation will then name the directory it cannot make
  }
  refuse(key, file, std::string("cannot be accessed (") + std::strerror(errno) + ")");
}

std::string read_file(const std::string& key, const std::string& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    refuse(key, file, std::string("cannot be read (") + std::strerror(errno) + ")");
  }
  std::string data;
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      refuse(key, file, std::string("cannot be read (") + std::strerror(err) + ")");
    }
    if (n == 0) {
      break;
    }
    data.append(buf, static_cast<std::size_t>(n));
    if (data.size() > std::size_t{1024} * 1024) {
      ::close(fd);
      refuse(key, file, "is larger than 1 MiB; it should hold one PEM block");
    }
  }
  ::close(fd);
  return data;
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
  if (::fchmod(fd, mode) != 0) {
    fail("cannot set its mode");
  }
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      fail("cannot be written");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    fail("cannot be flushed to disk");
  }
  ::close(fd);
}

void make_parent_directory(const std::string& key, const std::string& file) {
  const auto parent = std::filesystem::path(file).parent_path();
  if (parent.empty()) {
    return;
  }
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) {
    refuse(key, file, "cannot create directory " + parent.string() + " (" + ec.message() + ")");
  }
}

// Never prompt on the terminal for a passphrase: the sidecar runs unattended.
int no_passphrase(char*, int, int, void*) { return -1; }

std::string to_pem(X509* cert) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    throw std::runtime_error("cannot encode the CA certificate: " + take_openssl_error());
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

std::string key_to_pem(EVP_PKEY* key) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    throw std::runtime_error("cannot encode the CA key: " + take_openssl_error());
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

// Names the CA after the machine so an operator who finds it in a trust store knows where it
// came from; a random suffix when the host name is unusable.
std::string ca_common_name() {
  constexpr std::string_view prefix = "okta-sidecar local CA ";
  constexpr std::size_t max_cn = 64;  // RFC 5280 ub-common-name
  char host[256] = {};
  std::string suffix;
  if (::gethostname(host, sizeof host - 1) == 0) {
    for (const char* p = host; *p != '\0'; ++p) {
      const char c = *p;
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '.' || c == '_') {
        suffix += c;
      }
    }
  }
  if (suffix.empty()) {
    unsigned char bytes[4];
    RAND_bytes(bytes, sizeof bytes);
    static const char hex[] = "0123456789abcdef";
    for (unsigned char b : bytes) {
      suffix += hex[b >> 4];
      suffix += hex[b & 15];
    }
  }
  return std::string(prefix) + suffix.substr(0, max_cn - prefix.size());
}

x509_ptr build_ca_certificate(EVP_PKEY* key) {
  x509_ptr cert(X509_new());
  auto fail = [](const char* what) -> x509_ptr {
    throw std::runtime_error(std::string("cannot create the CA certificate (") + what +
                             "): " + take_openssl_error());
  };
  if (!cert) {
    return fail("X509_new");
  }
  X509* x = cert.get();
  if (X509_set_version(x, X509_VERSION_3) != 1 || !detail::set_random_serial(x)) {
    return fail("serial");
  }
  X509_NAME* name = X509_get_subject_name(x);
  const std::string cn = ca_common_name();
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0) != 1 ||
      X509_set_issuer_name(x, name) != 1) {
    return fail("subject");
  }
  if (X509_gmtime_adj(X509_getm_notBefore(x), -backdate_seconds) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(x), ca_validity_days, 0, nullptr) == nullptr) {
    return fail("validity");
  }
  if (X509_set_pubkey(x, key) != 1) {
    return fail("public key");
  }
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  // pathlen:0 — this CA only ever signs leaves; a stolen copy cannot mint sub-CAs.
  if (!detail::add_extension(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
      !detail::add_extension(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !detail::add_extension(x, &ctx, NID_subject_key_identifier, "hash")) {
    return fail("extensions");
  }
  if (X509_sign(x, key, detail::signing_digest(key)) <= 0) {
    return fail("signature");
  }
  return cert;
}

}  // namespace

certificate_authority::certificate_authority(x509_ptr cert, evp_pkey_ptr key, std::string pem, bool created)
    : cert_(std::move(cert)), key_(std::move(key)), cert_pem_(std::move(pem)), created_(created) {}

certificate_authority certificate_authority::load_or_create(const std::string& cert_file,
                                                            const std::string& key_file) {
  const std::string cert_key = "ca.cert_file";
  const std::string key_key = "ca.key_file";
  const bool have_cert = file_exists(cert_key, cert_file);
  const bool have_key = file_exists(key_key, key_file);

  if (!have_cert && !have_key) {
    evp_pkey_ptr key = detail::make_p256_key();
    x509_ptr cert = build_ca_certificate(key.get());
    std::string pem = to_pem(cert.get());
    make_parent_directory(key_key, key_file);
    make_parent_directory(cert_key, cert_file);
    write_new_file(key_key, key_file, key_to_pem(key.get()), 0600);
    try {
      write_new_file(cert_key, cert_file, pem, 0644);
    } catch (...) {
      // Leaving the key alone would make every later start refuse "only one file exists".
      ::unlink(key_file.c_str());
      throw;
    }
    return certificate_authority(std::move(cert), std::move(key), std::move(pem), true);
  }
  if (!have_key) {
    refuse(cert_key, cert_file,
           "exists but the CA key " + key_file +
               " does not; provide both files (e.g. from the same Secret), or remove " + cert_file +
               " to have a new CA created");
  }
  if (!have_cert) {
    refuse(key_key, key_file,
           "exists but the CA certificate " + cert_file + " does not; provide both files, or remove " +
               key_file + " to have a new CA created");
  }

  struct stat st {};
  if (::stat(key_file.c_str(), &st) != 0) {
    refuse(key_key, key_file, std::string("cannot be accessed (") + std::strerror(errno) + ")");
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    refuse(key_key, key_file,
           std::string("is accessible by group or others (mode ") + mode +
               "); the key signs certificates every client trusts: run `chmod 600 " + key_file +
               "` (for a Kubernetes Secret, set defaultMode: 0400)");
  }

  ERR_clear_error();
  const std::string key_pem = read_file(key_key, key_file);
  bio_ptr key_bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  evp_pkey_ptr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, no_passphrase, nullptr));
  if (!key) {
    refuse(key_key, key_file,
           "is not an unencrypted PEM private key (" + take_openssl_error() +
               "); regenerate it or remove both CA files to have a new CA created");
  }

  const std::string cert_text = read_file(cert_key, cert_file);
  bio_ptr cert_bio(BIO_new_mem_buf(cert_text.data(), static_cast<int>(cert_text.size())));
  x509_ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, no_passphrase, nullptr));
  if (!cert) {
    refuse(cert_key, cert_file,
           "is not a PEM certificate (" + take_openssl_error() +
               "); replace it or remove both CA files to have a new CA created");
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    refuse(key_key, key_file,
           "does not match the certificate in " + cert_file +
               "; provide the key that belongs to that certificate");
  }
  const uint32_t flags = X509_get_extension_flags(cert.get());
  if ((flags & EXFLAG_CA) == 0) {
    refuse(cert_key, cert_file,
           "is not a CA certificate (basicConstraints CA:TRUE missing); use a CA "
           "certificate, or remove both CA files to have one created");
  }
  if ((X509_get_key_usage(cert.get()) & KU_KEY_CERT_SIGN) == 0) {
    refuse(cert_key, cert_file,
           "may not sign certificates (keyUsage lacks keyCertSign); use a CA certificate "
           "that allows it");
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) <= 0) {
    refuse(cert_key, cert_file,
           "has expired; replace both CA files (or remove them to have a new CA created) and "
           "have clients trust the new certificate");
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) >= 0) {
    refuse(cert_key, cert_file, "is not valid yet; check this machine's clock");
  }
  std::string pem = to_pem(cert.get());
  return certificate_authority(std::move(cert), std::move(key), std::move(pem), false);
}

std::string certificate_authority::subject() const {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert_.get()), 0, XN_FLAG_RFC2253) < 0) {
    ERR_clear_error();
    return {};
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

}  // namespace okta_sidecar::tls
