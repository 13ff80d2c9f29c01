#include "okta_sidecar/tls/ca_bundle.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace okta_sidecar::tls {
namespace {

TEST(CaBundle, SystemRootsThenTheLocalCaEachEndingInANewline) {
  EXPECT_EQ(make_ca_bundle("ROOTS", "CA\n"), "ROOTS\nCA\n");
  EXPECT_EQ(make_ca_bundle("ROOTS\n", "CA"), "ROOTS\nCA\n");
  EXPECT_EQ(make_ca_bundle("", "CA\n"), "CA\n");
}

TEST(CaBundle, WritesMode0644WhateverTheUmaskAndReplacesAtomically) {
  const auto dir = std::filesystem::temp_directory_path() / ("ca-bundle-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto file = (dir / "ca-bundle.pem").string();
  const mode_t old = ::umask(0077);
  write_public_file(file, "one\n");
  write_public_file(file, "two\n");
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  std::ifstream in(file);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), "two\n");
  EXPECT_FALSE(std::filesystem::exists(file + ".tmp"));
  std::filesystem::remove_all(dir);
}

TEST(CaBundle, AnUnwritableDirectoryIsAnErrorNamingTheFile) {
  try {
    write_public_file("/nonexistent-dir/ca-bundle.pem", "x");
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/ca-bundle.pem"), std::string::npos) << e.what();
  }
}

TEST(CaBundle, SslCertFileNamesTheSystemRootsAsForOpenSsl) {
  const auto file = std::filesystem::temp_directory_path() / ("roots-" + std::to_string(::getpid()) + ".pem");
  std::ofstream(file) << "ROOTS\n";
  ::setenv("SSL_CERT_FILE", file.c_str(), 1);
  std::string pem;
  EXPECT_EQ(read_system_roots(pem), file.string());
  EXPECT_EQ(pem, "ROOTS\n");
  ::setenv("SSL_CERT_FILE", "/nonexistent/roots.pem", 1);
  EXPECT_EQ(read_system_roots(pem), "");
  EXPECT_EQ(pem, "");
  ::unsetenv("SSL_CERT_FILE");
  std::filesystem::remove(file);
}

}  // namespace
}  // namespace okta_sidecar::tls
