#include "common/access_policy.h"

#include <grp.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"

namespace nehost {
namespace {

constexpr uid_t kRoot = 0;

std::string DescribeCaller(const PeerCredentials& caller) {
  return absl::StrCat("the caller (pid ", caller.pid, ", uid ", caller.uid, ", gid ", caller.gid,
                      ")");
}

}  // namespace

std::string Group::Describe() const {
  if (name == std::to_string(gid)) return absl::StrCat("gid ", gid);
  return absl::StrCat(name, " (gid ", gid, ")");
}

absl::StatusOr<Group> ResolveGroup(const std::string& name_or_number) {
  gid_t number = 0;
  if (absl::SimpleAtoi(name_or_number, &number)) {
    return Group{number, name_or_number};
  }

  group entry{};
  group* found = nullptr;
  std::vector<char> buffer(4096);
  int err;
  while ((err = ::getgrnam_r(name_or_number.c_str(), &entry, buffer.data(), buffer.size(),
                             &found)) == ERANGE) {
    buffer.resize(buffer.size() * 2);
  }
  if (err != 0) return ErrnoStatus(err, "look up group", name_or_number);
  if (found == nullptr) {
    return absl::NotFoundError(absl::StrCat("group ", name_or_number, " does not exist"));
  }
  return Group{found->gr_gid, name_or_number};
}

absl::StatusOr<AccessPolicy> AccessPolicy::Create(const std::string& admin_group,
                                                  const std::string& reader_group) {
  std::optional<Group> admin;
  std::optional<Group> reader;
  if (!admin_group.empty()) {
    absl::StatusOr<Group> resolved = ResolveGroup(admin_group);
    if (!resolved.ok()) return resolved.status();
    admin = *std::move(resolved);
  }
  if (!reader_group.empty()) {
    absl::StatusOr<Group> resolved = ResolveGroup(reader_group);
    if (!resolved.ok()) return resolved.status();
    reader = *std::move(resolved);
  }
  return AccessPolicy(std::move(admin), std::move(reader), ::geteuid());
}

AccessPolicy AccessPolicy::RootOnly() { return AccessPolicy(std::nullopt, std::nullopt, ::geteuid()); }

bool AccessPolicy::IsAdmin(const PeerCredentials& caller) const {
  if (caller.uid == kRoot || caller.uid == own_uid_) return true;
  return admin_.has_value() && caller.InGroup(admin_->gid);
}

absl::Status AccessPolicy::Check(const PeerCredentials& caller, Access access,
                                 absl::string_view call) const {
  if (IsAdmin(caller)) return absl::OkStatus();
  if (access == Access::kRead && reader_.has_value() && caller.InGroup(reader_->gid)) {
    return absl::OkStatus();
  }

  return absl::PermissionDeniedError(absl::StrCat(call, " needs ", Needs(access), "; ",
                                                  DescribeCaller(caller), " is not in it"));
}

std::string AccessPolicy::Needs(Access access) const {
  if (access == Access::kAdmin) {
    if (!admin_.has_value()) return "uid 0 (no admin group is configured)";
    return absl::StrCat("uid 0 or the admin group ", admin_->Describe());
  }
  std::vector<std::string> groups;
  if (reader_.has_value()) groups.push_back("the reader group " + reader_->Describe());
  if (admin_.has_value()) groups.push_back("the admin group " + admin_->Describe());
  if (groups.empty()) return "uid 0 (no reader group is configured)";
  return absl::StrCat("uid 0 or ", absl::StrJoin(groups, " or "));
}

std::optional<gid_t> AccessPolicy::socket_group() const {
  if (reader_.has_value()) return reader_->gid;
  if (admin_.has_value()) return admin_->gid;
  return std::nullopt;
}

std::string AccessPolicy::Describe() const {
  return absl::StrCat("admin_group=", admin_.has_value() ? admin_->name : "none",
                      " reader_group=", reader_.has_value() ? reader_->name : "none");
}

absl::Status Authorizer::Check(const grpc::ServerContextBase& context, Access access,
                               absl::string_view call) const {
  std::optional<PeerCredentials> caller = connections_->Peer(ConnectionOf(context.peer()));
  if (!caller.has_value()) {
    return absl::PermissionDeniedError(
        absl::StrCat(call, ": the caller's credentials are unknown (peer ", context.peer(), ")"));
  }
  return policy_.Check(*caller, access, call);
}

}  // namespace nehost
