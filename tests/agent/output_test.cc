#include "agent/output.h"

#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace nehost::agent {
namespace {

using google::protobuf::Struct;
using google::protobuf::util::TimeUtil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kEndpoint[] = "unix:/run/nehost/services/org.nehost.filter.sock";

Registration ReadyRegistration() {
  Registration registration;
  registration.set_name("org.nehost.filter");
  registration.set_generation(3);
  registration.set_pid(1234);
  registration.set_version("0.1.0");
  registration.set_endpoint(kEndpoint);
  registration.set_state(supervisor::v1::READY);
  registration.set_enabled(true);
  return registration;
}

google::protobuf::Timestamp At(const std::string& text) {
  google::protobuf::Timestamp at;
  EXPECT_TRUE(TimeUtil::FromString(text, &at)) << text;
  return at;
}

Registration FailedRegistration() {
  Registration registration = ReadyRegistration();
  registration.set_state(supervisor::v1::FAILED);
  registration.set_state_reason("crash loop: 5 exits in 60s");
  registration.set_generation(5);
  registration.set_pid(0);
  registration.set_executable("/opt/nehost/bin/nehost-filter");
  registration.set_restart_count(4);
  *registration.mutable_next_attempt_at() = At("2024-05-01T10:00:30Z");

  supervisor::v1::ExitRecord* exit = registration.add_recent_exits();
  exit->set_generation(5);
  exit->set_pid(4321);
  exit->set_reason(supervisor::v1::CRASHED);
  exit->set_signal(9);
  *exit->mutable_at() = At("2024-05-01T10:00:00Z");
  exit->set_description("killed by signal 9 (Killed)");
  return registration;
}

Struct ParseJson(const std::string& json) {
  Struct object;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &object).ok()) << json;
  return object;
}

std::vector<std::string> Keys(const Struct& object) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : object.fields()) keys.push_back(key);
  std::sort(keys.begin(), keys.end());
  return keys;
}

TEST(FormatRegistration, TableIsAnAlignedKeyValueBlock) {
  EXPECT_EQ(FormatRegistration(ReadyRegistration(), OutputFormat::kTable),
            "name:        org.nehost.filter\n"
            "state:       ready\n"
            "generation:  3\n"
            "pid:         1234\n"
            "version:     0.1.0\n"
            "endpoint:    unix:/run/nehost/services/org.nehost.filter.sock\n"
            "enabled:     yes\n");
}

TEST(FormatRegistration, TableShowsWhyAServiceFailedAndHowItsProcessesEnded) {
  EXPECT_EQ(FormatRegistration(FailedRegistration(), OutputFormat::kTable),
            "name:             org.nehost.filter\n"
            "state:            failed\n"
            "state_reason:     crash loop: 5 exits in 60s\n"
            "generation:       5\n"
            "pid:              -\n"
            "version:          0.1.0\n"
            "endpoint:         unix:/run/nehost/services/org.nehost.filter.sock\n"
            "enabled:          yes\n"
            "executable:       /opt/nehost/bin/nehost-filter\n"
            "restart_count:    4\n"
            "next_attempt_at:  2024-05-01T10:00:30Z\n"
            "recent_exits:     2024-05-01T10:00:00Z generation 5 pid 4321 crashed: killed by "
            "signal 9 (Killed)\n");
}

TEST(FormatRegistration, JsonIsOneLineWithSortedKeysAndNumbersAsNumbers) {
  EXPECT_EQ(FormatRegistration(ReadyRegistration(), OutputFormat::kJson),
            R"({"enabled":true,"endpoint":"unix:/run/nehost/services/org.nehost.filter.sock",)"
            R"("generation":3,"name":"org.nehost.filter","pid":1234,"state":"ready",)"
            R"("version":"0.1.0"})"
            "\n");
}

TEST(FormatRegistration, JsonLeavesOutWhatIsNotPresent) {
  Registration registration = ReadyRegistration();
  registration.set_generation(0);
  registration.set_pid(0);
  registration.set_executable_sha256("abc");  // not a documented field
  Struct object = ParseJson(FormatRegistration(registration, OutputFormat::kJson));

  EXPECT_THAT(Keys(object),
              ElementsAre("enabled", "endpoint", "generation", "name", "pid", "state", "version"));
  EXPECT_EQ(object.fields().at("generation").number_value(), 0);
  EXPECT_EQ(object.fields().at("pid").number_value(), 0);
}

TEST(FormatRegistration, JsonAddsTheFieldsThatArePresent) {
  Struct object = ParseJson(FormatRegistration(FailedRegistration(), OutputFormat::kJson));

  EXPECT_THAT(Keys(object), ElementsAre("enabled", "endpoint", "executable", "generation", "name",
                                        "next_attempt_at", "pid", "recent_exits", "restart_count",
                                        "state", "state_reason", "version"));
  EXPECT_EQ(object.fields().at("state").string_value(), "failed");
  EXPECT_EQ(object.fields().at("state_reason").string_value(), "crash loop: 5 exits in 60s");
  EXPECT_EQ(object.fields().at("next_attempt_at").string_value(), "2024-05-01T10:00:30Z");
}

TEST(FormatRegistration, JsonExitSaysHowTheProcessEnded) {
  Struct object = ParseJson(FormatRegistration(FailedRegistration(), OutputFormat::kJson));
  const auto& exits = object.fields().at("recent_exits").list_value().values();
  ASSERT_EQ(exits.size(), 1);
  const Struct& exit = exits[0].struct_value();

  EXPECT_THAT(Keys(exit),
              ElementsAre("at", "description", "generation", "pid", "reason", "signal"));
  EXPECT_EQ(exit.fields().at("reason").string_value(), "crashed");
  EXPECT_EQ(exit.fields().at("signal").number_value(), 9);
  EXPECT_EQ(exit.fields().at("at").string_value(), "2024-05-01T10:00:00Z");
}

TEST(FormatRegistration, JsonExitWithoutSignalHasItsExitCode) {
  Registration registration = ReadyRegistration();
  supervisor::v1::ExitRecord* exit = registration.add_recent_exits();
  exit->set_reason(supervisor::v1::REQUESTED);
  Struct object = ParseJson(FormatRegistration(registration, OutputFormat::kJson));

  const Struct& first = object.fields().at("recent_exits").list_value().values(0).struct_value();
  EXPECT_THAT(Keys(first), ElementsAre("exit_code", "generation", "pid", "reason"));
  EXPECT_EQ(first.fields().at("reason").string_value(), "requested");
}

TEST(FormatServiceList, TableShowsTheReasonOnlyWhenNotReady) {
  ListResponse list;
  *list.add_registrations() = ReadyRegistration();
  *list.add_registrations() = FailedRegistration();
  list.mutable_registrations(0)->set_state_reason("serving");

  EXPECT_EQ(FormatServiceList(list, OutputFormat::kTable),
            "NAME               STATE                                GEN  PID   VERSION  ENDPOINT\n"
            "org.nehost.filter  ready                                3    1234  0.1.0    "
            "unix:/run/nehost/services/org.nehost.filter.sock\n"
            "org.nehost.filter  failed (crash loop: 5 exits in 60s)  5    -     0.1.0    "
            "unix:/run/nehost/services/org.nehost.filter.sock\n");
}

TEST(FormatServiceList, JsonWrapsRegistrationsInServices) {
  ListResponse list;
  EXPECT_EQ(FormatServiceList(list, OutputFormat::kJson), "{\"services\":[]}\n");

  *list.add_registrations() = ReadyRegistration();
  Struct object = ParseJson(FormatServiceList(list, OutputFormat::kJson));
  const auto& services = object.fields().at("services").list_value().values();
  ASSERT_EQ(services.size(), 1);
  EXPECT_EQ(services[0].struct_value().fields().at("name").string_value(), "org.nehost.filter");
}

StatusResponse FilterStatus() {
  StatusResponse status;
  status.set_version("0.1.0");
  status.set_pid(1234);
  status.set_generation(3);
  status.set_uptime_ms(61500);
  status.set_rule_count(2);
  return status;
}

TEST(FormatStatus, TableShowsUptimeReadably) {
  EXPECT_EQ(FormatStatus("org.nehost.filter", FilterStatus(), OutputFormat::kTable),
            "service:     org.nehost.filter\n"
            "version:     0.1.0\n"
            "pid:         1234\n"
            "generation:  3\n"
            "uptime:      1m1.5s\n"
            "rule_count:  2\n");
}

TEST(FormatStatus, JsonNamesTheServiceLookedUpWhenTheServiceDoesNot) {
  EXPECT_EQ(FormatStatus("org.nehost.filter", FilterStatus(), OutputFormat::kJson),
            R"({"generation":3,"pid":1234,"rule_count":2,"service":"org.nehost.filter",)"
            R"("uptime_ms":61500,"version":"0.1.0"})"
            "\n");

  StatusResponse named = FilterStatus();
  named.set_service("org.example.other");
  Struct object = ParseJson(FormatStatus("org.nehost.filter", named, OutputFormat::kJson));
  EXPECT_EQ(object.fields().at("service").string_value(), "org.example.other");
}

ListRulesResponse TwoRules() {
  ListRulesResponse rules;
  Rule* deny = rules.add_rules();
  deny->set_domain("ads.example.com");
  deny->set_action(Rule::DENY);
  deny->set_match(Rule::SUFFIX);
  Rule* allow = rules.add_rules();
  allow->set_domain("example.com");
  allow->set_action(Rule::ALLOW);
  allow->set_match(Rule::EXACT);
  return rules;
}

TEST(FormatRules, TableHasOneRowPerRule) {
  EXPECT_EQ(FormatRules("org.nehost.filter", TwoRules(), OutputFormat::kTable),
            "DOMAIN           ACTION  MATCH\n"
            "ads.example.com  deny    suffix\n"
            "example.com      allow   exact\n");
}

TEST(FormatRules, JsonListsRulesWithLowerCaseNames) {
  EXPECT_EQ(FormatRules("org.nehost.filter", TwoRules(), OutputFormat::kJson),
            R"({"rules":[{"action":"deny","domain":"ads.example.com","match":"suffix"},)"
            R"({"action":"allow","domain":"example.com","match":"exact"}],)"
            R"("service":"org.nehost.filter"})"
            "\n");
}

TEST(FormatAddedRule, SaysWhetherTheRuleWasNew) {
  AddRuleResponse added;
  added.set_added(true);
  *added.mutable_rule() = TwoRules().rules(0);
  EXPECT_EQ(FormatAddedRule("org.nehost.filter", added, OutputFormat::kTable),
            "added rule: deny ads.example.com (suffix)\n");

  added.set_added(false);
  EXPECT_EQ(FormatAddedRule("org.nehost.filter", added, OutputFormat::kTable),
            "rule already in force: deny ads.example.com (suffix)\n");
  EXPECT_EQ(FormatAddedRule("org.nehost.filter", added, OutputFormat::kJson),
            R"({"added":false,"rule":{"action":"deny","domain":"ads.example.com",)"
            R"("match":"suffix"},"service":"org.nehost.filter"})"
            "\n");
}

TEST(FormatRemovedRules, CountsWhatWasRemoved) {
  RemoveRuleResponse removed;
  EXPECT_EQ(FormatRemovedRules("s", "a.com", removed, OutputFormat::kTable),
            "no rule of a.com matched\n");
  removed.set_removed(1);
  EXPECT_EQ(FormatRemovedRules("s", "a.com", removed, OutputFormat::kTable),
            "removed 1 rule of a.com\n");
  removed.set_removed(2);
  EXPECT_EQ(FormatRemovedRules("s", "a.com", removed, OutputFormat::kTable),
            "removed 2 rules of a.com\n");
  EXPECT_EQ(FormatRemovedRules("s", "a.com", removed, OutputFormat::kJson),
            "{\"domain\":\"a.com\",\"removed\":2,\"service\":\"s\"}\n");
}

Event ExitedEvent() {
  Event event;
  *event.mutable_at() = At("2024-05-01T10:00:00.250Z");
  event.set_name("org.nehost.filter");
  event.set_generation(3);
  event.set_pid(1234);
  event.set_state(supervisor::v1::BACKOFF);
  event.set_kind("exited");
  supervisor::v1::ExitRecord* exit = event.mutable_exit();
  exit->set_generation(3);
  exit->set_pid(1234);
  exit->set_reason(supervisor::v1::CRASHED);
  exit->set_signal(9);
  exit->set_description("killed by signal 9 (Killed)");
  return event;
}

TEST(FormatEvent, TableIsOneLineWithTheExitCause) {
  EXPECT_EQ(FormatEvent(ExitedEvent(), OutputFormat::kTable),
            "2024-05-01T10:00:00.250Z  org.nehost.filter  exited  generation=3 pid=1234 "
            "state=backoff  crashed: killed by signal 9 (Killed)\n");
}

TEST(FormatEvent, TablePrefersTheEventMessage) {
  Event event = ExitedEvent();
  event.clear_exit();
  event.set_kind("ready");
  event.set_state(supervisor::v1::READY);
  event.set_message("serving");
  EXPECT_EQ(FormatEvent(event, OutputFormat::kTable),
            "2024-05-01T10:00:00.250Z  org.nehost.filter  ready  generation=3 pid=1234 "
            "state=ready  serving\n");
}

TEST(FormatEvent, JsonIsOneObjectOnOneLine) {
  const std::string json = FormatEvent(ExitedEvent(), OutputFormat::kJson);
  EXPECT_EQ(json.find('\n'), json.size() - 1);

  Struct object = ParseJson(json);
  EXPECT_THAT(Keys(object),
              ElementsAre("at", "exit", "generation", "kind", "name", "pid", "state"));
  EXPECT_EQ(object.fields().at("state").string_value(), "backoff");
  EXPECT_EQ(object.fields().at("exit").struct_value().fields().at("reason").string_value(),
            "crashed");
}

TEST(FormatAnything, JsonEscapesWhatItQuotes) {
  Registration registration = ReadyRegistration();
  registration.set_state_reason("exec \"nehost-filter\": no such file\n");
  const std::string json = FormatRegistration(registration, OutputFormat::kJson);

  EXPECT_THAT(json, HasSubstr(R"(exec \"nehost-filter\": no such file\n)"));
  EXPECT_THAT(json.substr(0, json.size() - 1), Not(HasSubstr("\n")));
}

TEST(Names, AreLowerCase) {
  EXPECT_EQ(StateName(supervisor::v1::STARTING), "starting");
  EXPECT_EQ(StateName(supervisor::v1::READY), "ready");
  EXPECT_EQ(StateName(supervisor::v1::DRAINING), "draining");
  EXPECT_EQ(StateName(supervisor::v1::STOPPING), "stopping");
  EXPECT_EQ(StateName(supervisor::v1::STOPPED), "stopped");
  EXPECT_EQ(StateName(supervisor::v1::BACKOFF), "backoff");
  EXPECT_EQ(StateName(supervisor::v1::FAILED), "failed");
  EXPECT_EQ(StateName(supervisor::v1::SERVICE_STATE_UNSPECIFIED), "unspecified");
  EXPECT_EQ(StopReasonName(supervisor::v1::NEVER_READY), "never_ready");
  EXPECT_EQ(StopReasonName(supervisor::v1::HOST_SHUTDOWN), "host_shutdown");
  EXPECT_EQ(StopReasonName(supervisor::v1::SUPERSEDED), "superseded");
}

// A newer nehostd may report a state this nehostctl does not know; it must still print.
TEST(Names, UnknownValuesStillPrint) {
  EXPECT_EQ(StateName(static_cast<ServiceState>(42)), "state_42");
  EXPECT_EQ(StopReasonName(static_cast<StopReason>(42)), "reason_42");
}

// The proto says an unspecified action denies and an unspecified match is exact.
TEST(Names, UnspecifiedRuleFieldsShowTheirDefaults) {
  EXPECT_EQ(ActionName(Rule::ACTION_UNSPECIFIED), "deny");
  EXPECT_EQ(MatchName(Rule::MATCH_UNSPECIFIED), "exact");
}

}  // namespace
}  // namespace nehost::agent
