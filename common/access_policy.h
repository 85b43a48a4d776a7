// Who may call what on nehost's gRPC servers, decided from the caller's credentials as the
// kernel recorded them for its connection (SO_PEERCRED, SO_PEERGROUPS), which the accept loop
// reads once per connection.
//
// Calls come in two kinds: those that only read (lookups, status, listing rules) need the
// reader group, and those that change something (rules, upgrade, restart, stop) need the admin
// group. uid 0 and the server's own uid may call anything, and an admin may also read. A group
// that is not configured admits nobody beyond them. Health and reflection are not checked:
// reaching the socket, mode 0660 and owned by the reader group, is enough for them.
//
//   absl::StatusOr<AccessPolicy> policy = AccessPolicy::Create("nehost-admin", "nehost");
//   Authorizer authorizer(*policy, &connections);
//   if (absl::Status allowed = authorizer.Check(*context, Access::kAdmin, "AddRule");
//       !allowed.ok()) return ToGrpcStatus(allowed);   // PERMISSION_DENIED, naming the group
//
// Both types are immutable once made, so thread safe; nothing blocks but group resolution in
// Create, which reads the group database.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/grpc_server.h"
#include "common/unix_socket.h"

namespace nehost {

enum class Access { kRead, kAdmin };

// A group as configured: its number, and a name for messages ("nehost-admin", or the number).
struct Group {
  gid_t gid = 0;
  std::string name;

  // "nehost-admin (gid 990)".
  std::string Describe() const;
};

// A group name, or a number, which needs no entry in the group database. NOT_FOUND when a
// name names no group.
absl::StatusOr<Group> ResolveGroup(const std::string& name_or_number);

class AccessPolicy {
 public:
  // Empty strings configure no group. The server's own uid is read here.
  static absl::StatusOr<AccessPolicy> Create(const std::string& admin_group,
                                             const std::string& reader_group);
  // Only uid 0 and the server's own uid.
  static AccessPolicy RootOnly();

  // PERMISSION_DENIED, naming the call, what it needs and who the caller is, when caller may
  // not make it.
  absl::Status Check(const PeerCredentials& caller, Access access, absl::string_view call) const;

  // The group that should own the sockets: the reader group, else the admin group.
  std::optional<gid_t> socket_group() const;
  const std::optional<Group>& admin_group() const { return admin_; }
  const std::optional<Group>& reader_group() const { return reader_; }

  // "admin_group=nehost-admin reader_group=none", for logs.
  std::string Describe() const;

 private:
  AccessPolicy(std::optional<Group> admin, std::optional<Group> reader, uid_t own_uid)
      : admin_(std::move(admin)), reader_(std::move(reader)), own_uid_(own_uid) {}

  bool IsAdmin(const PeerCredentials& caller) const;
  // "uid 0 or the reader group nehost (gid 991) or the admin group nehost-admin (gid 990)".
  std::string Needs(Access access) const;

  std::optional<Group> admin_;
  std::optional<Group> reader_;
  uid_t own_uid_;
};

// A policy applied to the calls of one server: finds each call's connection in the table the
// accept loop fills. The table must outlive the authorizer.
class Authorizer {
 public:
  Authorizer(AccessPolicy policy, const ConnectionTable* connections)
      : policy_(std::move(policy)), connections_(connections) {}

  // PERMISSION_DENIED also when the call did not come through the accept loop, so that its
  // caller is unknown.
  absl::Status Check(const grpc::ServerContextBase& context, Access access,
                     absl::string_view call) const;

  const AccessPolicy& policy() const { return policy_; }

 private:
  AccessPolicy policy_;
  const ConnectionTable* connections_;
};

}  // namespace nehost
