#include "okta_sidecar/auth/diagnosis_log.hpp"

#include <gtest/gtest.h>

namespace okta_sidecar::auth {
namespace {

TEST(DiagnosisLog, StartsEmpty) {
  diagnosis_log log;
  EXPECT_TRUE(log.snapshot().is_array());
  EXPECT_TRUE(log.snapshot().empty());
}

TEST(DiagnosisLog, SnapshotIsNewestFirst) {
  diagnosis_log log;
  log.add({{"reason", "a"}});
  log.add({{"reason", "b"}});
  const auto s = log.snapshot();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0]["reason"], "b");
  EXPECT_EQ(s[1]["reason"], "a");
}

TEST(DiagnosisLog, KeepsOnlyTheLastCapacityEntries) {
  diagnosis_log log(3);
  for (int i = 0; i < 5; ++i) log.add({{"n", i}});
  const auto s = log.snapshot();
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0]["n"], 4);
  EXPECT_EQ(s[2]["n"], 2);
}

TEST(DiagnosisLog, DefaultCapacityIsFifty) {
  diagnosis_log log;
  for (int i = 0; i < 60; ++i) log.add({{"n", i}});
  EXPECT_EQ(log.snapshot().size(), 50u);
}

}  // namespace
}  // namespace okta_sidecar::auth
