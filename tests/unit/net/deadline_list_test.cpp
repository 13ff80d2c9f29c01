// The sorted intrusive list behind the parked connections' one timer: order, removal from any
// place, expiry up to `now`, and the bounded walk that may expire a member late, never early.
#include "okta_sidecar/net/deadline_list.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace okta_sidecar::net {
namespace {

const time_point t0{};
time_point at(int ms) { return t0 + milliseconds(ms); }

struct member : deadline_hook {
  int id = 0;
};

// The ids `list` hands out, in order, when the time is `now`.
std::vector<int> expire(deadline_list& list, time_point now) {
  std::vector<int> ids;
  while (auto* h = list.pop_expired(now)) ids.push_back(static_cast<member*>(h)->id);
  return ids;
}

TEST(DeadlineList, HandsOutMembersInDeadlineOrderUpToNow) {
  deadline_list list;
  EXPECT_EQ(list.next_deadline(), time_point::max());
  member m[4];
  for (int i = 0; i < 4; ++i) m[i].id = i;
  list.add(m[0], at(30));
  list.add(m[1], at(10));  // earlier than the tail: walks back
  list.add(m[2], at(40));
  list.add(m[3], at(20));
  EXPECT_EQ(list.size(), 4u);
  EXPECT_EQ(list.next_deadline(), at(10));
  EXPECT_EQ(expire(list, at(9)), std::vector<int>{});
  EXPECT_EQ(expire(list, at(20)), (std::vector<int>{1, 3}));  // a deadline equal to now is due
  EXPECT_EQ(list.next_deadline(), at(30));
  EXPECT_EQ(expire(list, at(100)), (std::vector<int>{0, 2}));
  EXPECT_TRUE(list.empty());
  EXPECT_FALSE(m[0].linked);
}

TEST(DeadlineList, RemovesFromHeadMiddleAndTailAndIgnoresWhatIsNotLinked) {
  deadline_list list;
  member m[5];
  for (int i = 0; i < 5; ++i) {
    m[i].id = i;
    list.add(m[i], at(i));
  }
  list.remove(m[2]);
  list.remove(m[0]);
  list.remove(m[4]);
  list.remove(m[4]);  // twice: nothing
  member stranger;
  list.remove(stranger);
  EXPECT_EQ(list.size(), 2u);
  EXPECT_EQ(expire(list, at(100)), (std::vector<int>{1, 3}));
  // A removed member can be added again, with a new deadline.
  list.add(m[2], at(50));
  list.add(m[0], at(40));
  EXPECT_EQ(expire(list, at(100)), (std::vector<int>{0, 2}));
}

TEST(DeadlineList, AddingALinkedMemberMovesIt) {
  deadline_list list;
  member a, b;
  a.id = 1;
  b.id = 2;
  list.add(a, at(10));
  list.add(b, at(20));
  list.add(a, at(30));
  EXPECT_EQ(list.size(), 2u);
  EXPECT_EQ(expire(list, at(25)), std::vector<int>{2});
  EXPECT_EQ(expire(list, at(30)), std::vector<int>{1});
}

TEST(DeadlineList, AnEarlierDeadlineBeyondTheWalkExpiresLateNeverEarly) {
  // A reload shortened the timeout: the new deadline is earlier than every one parked before.
  deadline_list list;
  std::vector<member> old(deadline_list::max_walk + 8);
  for (std::size_t i = 0; i < old.size(); ++i) {
    old[i].id = static_cast<int>(i);
    list.add(old[i], at(1000 + static_cast<int>(i)));
  }
  member early;
  early.id = -1;
  list.add(early, at(100));
  // It sits max_walk places from the tail, behind the first 8 old members.
  EXPECT_EQ(list.next_deadline(), at(1000));
  EXPECT_EQ(expire(list, at(999)), std::vector<int>{});
  const auto first = expire(list, at(1007));
  EXPECT_EQ(first, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, -1}));
  EXPECT_EQ(list.size(), deadline_list::max_walk);
}

}  // namespace
}  // namespace okta_sidecar::net
