#include "common/access_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

namespace nehost {
namespace {

using ::testing::HasSubstr;

constexpr uid_t kSomeone = 4000;
constexpr gid_t kAdmins = 4243;
constexpr gid_t kReaders = 4242;

PeerCredentials Caller(gid_t primary, std::vector<gid_t> groups = {}) {
  return PeerCredentials{1234, kSomeone, primary, std::move(groups)};
}

AccessPolicy BothGroups() {
  absl::StatusOr<AccessPolicy> policy = AccessPolicy::Create("4243", "4242");
  EXPECT_TRUE(policy.ok()) << policy.status();
  return *policy;
}

TEST(AccessPolicy, RootAndTheServersOwnUidMayCallAnything) {
  AccessPolicy policy = AccessPolicy::RootOnly();
  EXPECT_TRUE(policy.Check({1, 0, 0, {}}, Access::kAdmin, "AddRule").ok());
  EXPECT_TRUE(policy.Check({1, ::geteuid(), 0, {}}, Access::kAdmin, "AddRule").ok());
}

TEST(AccessPolicy, ReaderGroupMayReadButNotChange) {
  AccessPolicy policy = BothGroups();
  EXPECT_TRUE(policy.Check(Caller(kReaders), Access::kRead, "Status").ok());

  absl::Status denied = policy.Check(Caller(kReaders), Access::kAdmin, "AddRule");
  EXPECT_TRUE(absl::IsPermissionDenied(denied));
  EXPECT_THAT(denied.message(), HasSubstr("AddRule needs uid 0 or the admin group gid 4243"));
  EXPECT_THAT(denied.message(), HasSubstr("uid 4000"));
}

TEST(AccessPolicy, AdminGroupMayAlsoRead) {
  AccessPolicy policy = BothGroups();
  EXPECT_TRUE(policy.Check(Caller(kAdmins), Access::kAdmin, "Upgrade").ok());
  EXPECT_TRUE(policy.Check(Caller(kAdmins), Access::kRead, "Lookup").ok());
}

TEST(AccessPolicy, SupplementaryGroupsCount) {
  AccessPolicy policy = BothGroups();
  EXPECT_TRUE(policy.Check(Caller(100, {7, kAdmins}), Access::kAdmin, "Restart").ok());
}

TEST(AccessPolicy, AnyoneElseIsDeniedWithWhatTheCallNeeds) {
  AccessPolicy policy = BothGroups();
  absl::Status denied = policy.Check(Caller(100), Access::kRead, "Lookup");
  EXPECT_TRUE(absl::IsPermissionDenied(denied));
  EXPECT_THAT(denied.message(),
              HasSubstr("Lookup needs uid 0 or the reader group gid 4242 or the admin group gid "
                        "4243"));
}

TEST(AccessPolicy, WithoutGroupsOnlyRootIsAdmitted) {
  absl::Status denied = AccessPolicy::RootOnly().Check(Caller(100), Access::kRead, "List");
  EXPECT_TRUE(absl::IsPermissionDenied(denied));
  EXPECT_THAT(denied.message(), HasSubstr("no reader group is configured"));
}

TEST(AccessPolicy, SocketGroupIsTheReaderGroupElseTheAdminGroup) {
  EXPECT_EQ(BothGroups().socket_group(), kReaders);
  absl::StatusOr<AccessPolicy> admin_only = AccessPolicy::Create("4243", "");
  ASSERT_TRUE(admin_only.ok());
  EXPECT_EQ(admin_only->socket_group(), kAdmins);
  EXPECT_EQ(AccessPolicy::RootOnly().socket_group(), std::nullopt);
}

TEST(ResolveGroup, NamesAndNumbers) {
  absl::StatusOr<Group> root = ResolveGroup("root");
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ(root->gid, 0u);
  EXPECT_EQ(root->Describe(), "root (gid 0)");

  absl::StatusOr<Group> number = ResolveGroup("4242");
  ASSERT_TRUE(number.ok());
  EXPECT_EQ(number->Describe(), "gid 4242");

  absl::StatusOr<Group> missing = ResolveGroup("no-such-group-nehost");
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
  EXPECT_THAT(missing.status().message(), HasSubstr("no-such-group-nehost"));
}

TEST(AccessPolicy, UnknownGroupNameIsAnError) {
  absl::StatusOr<AccessPolicy> policy = AccessPolicy::Create("no-such-group-nehost", "");
  EXPECT_FALSE(policy.ok());
}

}  // namespace
}  // namespace nehost
