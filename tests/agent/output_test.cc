#include "agent/output.h"

#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

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
  registration.set_endpoint_listener_pid(7);  // not a documented field
  Struct object = ParseJson(FormatRegistration(registration, OutputFormat::kJson));

  EXPECT_THAT(Keys(object),
              ElementsAre("enabled", "endpoint", "generation", "name", "pid", "state", "version"));
  EXPECT_EQ(object.fields().at("generation").number_value(), 0);
  EXPECT_EQ(object.fields().at("pid").number_value(), 0);
}

TEST(FormatRegistration, ShowsWhatVouchedForTheExecutable) {
  Registration registration = ReadyRegistration();
  registration.set_executable_sha256("c79bf442");
  registration.set_verified_by("signed manifest /opt/nehost/versions/2.0.0/manifest.json, key 1");

  Struct object = ParseJson(FormatRegistration(registration, OutputFormat::kJson));
  EXPECT_EQ(object.fields().at("executable_sha256").string_value(), "c79bf442");
  EXPECT_EQ(object.fields().at("verified_by").string_value(),
            "signed manifest /opt/nehost/versions/2.0.0/manifest.json, key 1");
  const std::string table = FormatRegistration(registration, OutputFormat::kTable);
  EXPECT_THAT(table, ::testing::ContainsRegex(
                         "verified_by: +signed manifest /opt/nehost/versions/2.0.0/manifest.json"));
  EXPECT_THAT(table, ::testing::ContainsRegex("sha256: +c79bf442"));
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

Registration UpgradingRegistration() {
  Registration registration = ReadyRegistration();
  registration.set_upgrading_to("0.2.0");
  GenerationRecord* candidate = registration.add_other_generations();
  candidate->set_role(GenerationRecord::CANDIDATE);
  candidate->set_generation(4);
  candidate->set_pid(4242);
  candidate->set_start_time_ticks(99);
  candidate->set_executable("/opt/nehost/versions/0.2.0/bin/nehost-filter");
  candidate->set_version("0.2.0");
  GenerationRecord* draining = registration.add_other_generations();
  draining->set_role(GenerationRecord::DRAINING);
  draining->set_generation(2);
  draining->set_pid(777);
  draining->set_version("0.1.0");
  return registration;
}

TEST(FormatRegistration, TableShowsAnUpgradeUnderWayAndTheOtherGenerations) {
  EXPECT_EQ(FormatRegistration(UpgradingRegistration(), OutputFormat::kTable),
            "name:               org.nehost.filter\n"
            "state:              ready\n"
            "generation:         3\n"
            "pid:                1234\n"
            "version:            0.1.0\n"
            "endpoint:           unix:/run/nehost/services/org.nehost.filter.sock\n"
            "enabled:            yes\n"
            "upgrading_to:       0.2.0\n"
            "other_generations:  candidate generation 4 pid 4242 version 0.2.0\n"
            "                    draining generation 2 pid 777 version 0.1.0\n");
}

TEST(FormatRegistration, JsonListsTheOtherGenerationsWithTheirRoles) {
  const std::string json = FormatRegistration(UpgradingRegistration(), OutputFormat::kJson);
  Struct object = ParseJson(json);

  EXPECT_THAT(Keys(object),
              ElementsAre("enabled", "endpoint", "generation", "name", "other_generations", "pid",
                          "state", "upgrading_to", "version"));
  EXPECT_EQ(object.fields().at("upgrading_to").string_value(), "0.2.0");
  const auto& others = object.fields().at("other_generations").list_value().values();
  ASSERT_EQ(others.size(), 2);
  EXPECT_EQ(others[1].struct_value().fields().at("role").string_value(), "draining");
  EXPECT_THAT(json,
              HasSubstr(R"("other_generations":[)"
                        R"({"generation":4,"pid":4242,"role":"candidate","version":"0.2.0"},)"
                        R"({"generation":2,"pid":777,"role":"draining","version":"0.1.0"}])"));
}

TEST(FormatServiceList, TableSaysWhichServiceIsBeingUpgraded) {
  ListResponse list;
  *list.add_registrations() = UpgradingRegistration();

  EXPECT_THAT(FormatServiceList(list, OutputFormat::kTable),
              HasSubstr("org.nehost.filter  ready (upgrading to 0.2.0)  3"));
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
            "DOMAIN           ACTION  MATCH   RESPONSE\n"
            "ads.example.com  deny    suffix\n"
            "example.com      allow   exact\n");
}

TEST(FormatRules, TableShowsResponsesAndListsAfterTheRules) {
  ListRulesResponse rules = TwoRules();
  rules.mutable_rules(0)->set_response(Rule::SINKHOLE);
  RuleList* list = rules.add_lists();
  list->set_name("ads");
  list->set_action(Rule::DENY);
  list->set_response(Rule::NXDOMAIN);
  list->set_count(3);
  EXPECT_EQ(FormatRules("org.nehost.filter", rules, OutputFormat::kTable),
            "DOMAIN              ACTION  MATCH   RESPONSE\n"
            "ads.example.com     deny    suffix  sinkhole\n"
            "example.com         allow   exact\n"
            "list ads (3 names)  deny    list    nxdomain\n");
}

TEST(FormatRules, JsonListsRulesWithLowerCaseNames) {
  EXPECT_EQ(FormatRules("org.nehost.filter", TwoRules(), OutputFormat::kJson),
            R"({"lists":[],"rules":[{"action":"deny","domain":"ads.example.com","match":"suffix"},)"
            R"({"action":"allow","domain":"example.com","match":"exact"}],)"
            R"("service":"org.nehost.filter"})"
            "\n");
}

TEST(FormatImport, SaysWhatWasImportedAndListsInvalidLinesForStderr) {
  ImportRulesResponse imported;
  imported.set_committed(true);
  imported.mutable_list()->set_name("ads");
  imported.mutable_list()->set_action(Rule::DENY);
  imported.mutable_list()->set_response(Rule::NXDOMAIN);
  imported.mutable_list()->set_count(2);
  imported.set_invalid_lines(3);
  imported.set_skipped_lines(1);
  ImportLineError* error = imported.add_errors();
  error->set_line(4);
  error->set_message("invalid domain \"a..b\": label 2 is empty");

  EXPECT_EQ(FormatImport("org.nehost.filter", "ads.txt", imported, OutputFormat::kTable),
            "imported list ads: 2 names, deny with nxdomain; 3 invalid lines, 1 skipped\n");
  EXPECT_EQ(FormatImportErrors("ads.txt", imported),
            "ads.txt:4: invalid domain \"a..b\": label 2 is empty\n"
            "ads.txt: 2 more invalid lines\n");
  EXPECT_EQ(FormatImport("org.nehost.filter", "ads.txt", imported, OutputFormat::kJson),
            R"({"committed":true,"errors":[{"line":4,"message":"invalid domain \"a..b\": )"
            R"(label 2 is empty"}],"file":"ads.txt","invalid_lines":3,"list":{"action":"deny",)"
            R"("count":2,"name":"ads","response":"nxdomain"},"replaced":false,"service":)"
            R"("org.nehost.filter","skipped_lines":1})"
            "\n");

  imported.set_committed(false);
  EXPECT_EQ(FormatImport("org.nehost.filter", "ads.txt", imported, OutputFormat::kTable),
            "list ads not imported: it has invalid lines and --all-or-nothing was given\n");
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
            "10:00:00.250  org.nehost.filter  exited  generation=3 pid=1234 "
            "state=backoff  crashed: killed by signal 9 (Killed)\n");
}

// Lines of a watch line up on their times, whole seconds included.
TEST(FormatEvent, TableTimeIsUtcToTheMillisecond) {
  Event event = ExitedEvent();
  *event.mutable_at() = At("2024-05-01T23:59:07Z");
  EXPECT_THAT(FormatEvent(event, OutputFormat::kTable), ::testing::StartsWith("23:59:07.000  "));

  *event.mutable_at() = At("2024-05-01T10:00:00.999999999Z");
  EXPECT_THAT(FormatEvent(event, OutputFormat::kTable), ::testing::StartsWith("10:00:00.999  "));
}

// nehostd may name kinds this nehostctl never heard of; they print like any other.
TEST(FormatEvent, UpgradeKindsPrintAsTheyCome) {
  for (const char* kind : {"upgrading", "rolled_back", "switched", "draining", "adopted"}) {
    Event event = ExitedEvent();
    event.clear_exit();
    event.set_kind(kind);
    event.set_state(supervisor::v1::DRAINING);
    event.set_message("generation 4 took over");
    EXPECT_EQ(FormatEvent(event, OutputFormat::kTable),
              absl::StrCat("10:00:00.250  org.nehost.filter  ", kind,
                           "  generation=3 pid=1234 state=draining  generation 4 took over\n"));
  }
}

TEST(FormatEvent, TablePrefersTheEventMessage) {
  Event event = ExitedEvent();
  event.clear_exit();
  event.set_kind("ready");
  event.set_state(supervisor::v1::READY);
  event.set_message("serving");
  EXPECT_EQ(FormatEvent(event, OutputFormat::kTable),
            "10:00:00.250  org.nehost.filter  ready  generation=3 pid=1234 state=ready  serving\n");
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
  EXPECT_EQ(object.fields().at("at").string_value(), "2024-05-01T10:00:00.250Z");
}

UpgradeProgress Progress(const std::string& step, const std::string& message) {
  UpgradeProgress progress;
  *progress.mutable_at() = At("2024-05-01T10:00:00.250Z");
  progress.set_step(step);
  progress.set_message(message);
  progress.set_generation(4);
  progress.set_pid(4242);
  return progress;
}

TEST(FormatProgress, PlainIsTimeStepAndMessage) {
  EXPECT_EQ(
      FormatProgress(Progress("launch", "started generation 4 pid 4242"), OutputFormat::kTable),
      "10:00:00.250 launch   started generation 4 pid 4242\n");
  EXPECT_EQ(
      FormatProgress(Progress("rollback", "generation 4 never sent READY=1"), OutputFormat::kTable),
      "10:00:00.250 rollback generation 4 never sent READY=1\n");
  EXPECT_EQ(FormatProgress(Progress("verify", ""), OutputFormat::kTable), "10:00:00.250 verify\n");
}

// Piped output goes to logs and scripts: one line per message, and nothing a terminal would
// act on.
TEST(FormatProgress, PlainKeepsServerTextOnOneLineWithoutEscapes) {
  const std::string line =
      FormatProgress(Progress("drain", "first\nsecond\r\033[2Jthird"), OutputFormat::kTable);

  EXPECT_EQ(line, "10:00:00.250 drain    first second  [2Jthird\n");
}

TEST(FormatProgress, JsonHasTheOutcomeOnlyOnTheLastMessage) {
  Struct step = ParseJson(FormatProgress(Progress("ready", "READY=1"), OutputFormat::kJson));
  EXPECT_THAT(Keys(step), ElementsAre("at", "done", "generation", "message", "pid", "step"));
  EXPECT_EQ(step.fields().at("at").string_value(), "2024-05-01T10:00:00.250Z");
  EXPECT_FALSE(step.fields().at("done").bool_value());

  UpgradeProgress last = Progress("done", "");
  last.set_done(true);
  last.set_rolled_back(true);
  EXPECT_EQ(FormatProgress(last, OutputFormat::kJson),
            R"({"at":"2024-05-01T10:00:00.250Z","done":true,"generation":4,"pid":4242,)"
            R"("rolled_back":true,"step":"done","succeeded":false})"
            "\n");
}

TEST(FormatLiveStep, ShowsTheElapsedTimeInAColumn) {
  EXPECT_EQ(FormatLiveStep("launch", "started generation 4", absl::Milliseconds(12), 0),
            "launch        12 ms  started generation 4");
  EXPECT_EQ(FormatLiveStep("ready", "", absl::Milliseconds(1500), 0), "ready       1500 ms");
  EXPECT_EQ(FormatLiveStep("ready", "", -absl::Milliseconds(3), 0), "ready          0 ms");
}

// A line that wrapped could not be redrawn in place with a carriage return.
TEST(FormatLiveStep, FitsInTheTerminal) {
  const std::string line =
      FormatLiveStep("switch", std::string(200, 'x'), absl::Milliseconds(1), 80);
  EXPECT_EQ(line.size(), 79u);

  // "é" is two bytes: the cut may not fall between them.
  const std::string accents = "\xc3\xa9\xc3\xa9\xc3\xa9";
  EXPECT_EQ(FormatLiveStep("switch", accents, absl::Milliseconds(1), 24),
            "switch         1 ms  \xc3\xa9");
  EXPECT_EQ(FormatLiveStep("switch", accents, absl::Milliseconds(1), 23), "switch         1 ms  ");
  EXPECT_EQ(FormatLiveStep("switch", "a\nb", absl::Milliseconds(1), 0), "switch         1 ms  a b");
}

TEST(FormatUpgraded, NamesGenerationVersionAndTime) {
  EXPECT_EQ(FormatUpgraded("org.nehost.filter", 4, "0.2.0", absl::Milliseconds(231)),
            "upgraded org.nehost.filter to generation 4 (version 0.2.0) in 231 ms\n");
  EXPECT_EQ(FormatUpgraded("org.nehost.filter", 4, "", absl::Milliseconds(231)),
            "upgraded org.nehost.filter to generation 4 in 231 ms\n");
}

TEST(FormatRolledBack, NamesTheReasonAndWhatServes) {
  EXPECT_EQ(FormatRolledBack("org.nehost.filter", "generation 4 never sent READY=1", 3),
            "rolled back org.nehost.filter: generation 4 never sent READY=1; generation 3 keeps "
            "serving\n");
  EXPECT_EQ(FormatRolledBackUnknown("org.nehost.filter", "exited at start", "timed out"),
            "rolled back org.nehost.filter: exited at start; no generation answers a lookup: "
            "timed out\n");
}

DoctorResponse TroubledDoctor() {
  DoctorResponse doctor;
  *doctor.mutable_registration() = FailedRegistration();
  doctor.mutable_registration()->set_pid(1234);
  supervisor::v1::DoctorCheck* alive = doctor.add_checks();
  alive->set_name("alive");
  alive->set_ok(true);
  alive->set_detail("pidfd says pid 1234 runs");
  supervisor::v1::DoctorCheck* start = doctor.add_checks();
  start->set_name("start_time");
  start->set_ok(false);
  start->set_detail("pid 1234 started at tick 99, the registry says 42");
  supervisor::v1::StrayProcess* stray = doctor.add_strays();
  stray->set_pid(999);
  stray->set_executable("/opt/nehost/versions/0.1.0/bin/nehost-filter");
  stray->set_why("runs the service's executable");
  doctor.set_summary(
      "The registered process is not the one nehostd launched: pid 1234 was reused. nehostd "
      "will stop the stray and start generation 6.");
  return doctor;
}

TEST(FormatDoctor, TableHasEverySectionInOrder) {
  EXPECT_EQ(FormatDoctor(TroubledDoctor(), OutputFormat::kTable),
            "name:             org.nehost.filter\n"
            "state:            failed\n"
            "state_reason:     crash loop: 5 exits in 60s\n"
            "generation:       5\n"
            "pid:              1234\n"
            "version:          0.1.0\n"
            "endpoint:         unix:/run/nehost/services/org.nehost.filter.sock\n"
            "enabled:          yes\n"
            "executable:       /opt/nehost/bin/nehost-filter\n"
            "restart_count:    4\n"
            "next_attempt_at:  2024-05-01T10:00:30Z\n"
            "\n"
            "checks:\n"
            "  ok    alive       pidfd says pid 1234 runs\n"
            "  FAIL  start_time  pid 1234 started at tick 99, the registry says 42\n"
            "\n"
            "strays:\n"
            "  PID  EXECUTABLE                                    WHY\n"
            "  999  /opt/nehost/versions/0.1.0/bin/nehost-filter  runs the service's executable\n"
            "\n"
            "recent exits:\n"
            "  2024-05-01T10:00:00Z generation 5 pid 4321 crashed: killed by signal 9 (Killed)\n"
            "\n"
            "The registered process is not the one nehostd launched: pid 1234 was reused.\n"
            "nehostd will stop the stray and start generation 6.\n");
}

TEST(FormatDoctor, TableSaysNoneForEmptySections) {
  DoctorResponse doctor;
  *doctor.mutable_registration() = ReadyRegistration();
  const std::string table = FormatDoctor(doctor, OutputFormat::kTable);

  EXPECT_THAT(table, HasSubstr("\nchecks: none\n\nstrays: none\n\nrecent exits: none\n"));
  EXPECT_EQ(table.back(), '\n');
  EXPECT_THAT(table, Not(HasSubstr("\n\n\n")));
}

TEST(FormatDoctor, JsonIsOneObjectWithTheVerdict) {
  const std::string json = FormatDoctor(TroubledDoctor(), OutputFormat::kJson);
  Struct object = ParseJson(json);

  EXPECT_THAT(Keys(object), ElementsAre("checks", "healthy", "registration", "strays", "summary"));
  EXPECT_FALSE(object.fields().at("healthy").bool_value());
  EXPECT_EQ(object.fields().at("registration").struct_value().fields().at("pid").number_value(),
            1234);
  EXPECT_THAT(json, HasSubstr(R"("checks":[{"detail":"pidfd says pid 1234 runs","name":"alive",)"
                              R"("ok":true},{"detail":"pid 1234 started at tick 99, the registry )"
                              R"(says 42","name":"start_time","ok":false}])"));
  EXPECT_THAT(json,
              HasSubstr(R"("strays":[{"executable":"/opt/nehost/versions/0.1.0/bin/)"
                        R"(nehost-filter","pid":999,"why":"runs the service's executable"}])"));
  EXPECT_EQ(json.find('\n'), json.size() - 1);
}

TEST(DoctorFoundNothingWrong, NeedsEveryCheckOkAndNoStray) {
  DoctorResponse doctor = TroubledDoctor();
  EXPECT_FALSE(DoctorFoundNothingWrong(doctor));

  doctor.mutable_checks(1)->set_ok(true);
  EXPECT_FALSE(DoctorFoundNothingWrong(doctor)) << "a stray is still wrong";

  doctor.clear_strays();
  EXPECT_TRUE(DoctorFoundNothingWrong(doctor));
  EXPECT_TRUE(
      ParseJson(FormatDoctor(doctor, OutputFormat::kJson)).fields().at("healthy").bool_value());
}

TEST(FormatReexec, TableLinesAndJsonObject) {
  EXPECT_EQ(FormatReexecStarted(321), "nehostd pid 321 re-executing; services keep running\n");
  EXPECT_EQ(FormatReexecEnded(321, absl::Milliseconds(45), OutputFormat::kTable),
            "nehostd is back after 45 ms\n");
  EXPECT_EQ(FormatReexecEnded(321, std::nullopt, OutputFormat::kTable), "");
  EXPECT_EQ(FormatReexecEnded(321, absl::Milliseconds(45), OutputFormat::kJson),
            "{\"back\":true,\"back_after_ms\":45,\"pid\":321}\n");
  EXPECT_EQ(FormatReexecEnded(321, std::nullopt, OutputFormat::kJson),
            "{\"back\":false,\"pid\":321}\n");
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
  EXPECT_EQ(RoleName(GenerationRecord::CANDIDATE), "candidate");
  EXPECT_EQ(RoleName(GenerationRecord::DRAINING), "draining");
  EXPECT_EQ(RoleName(GenerationRecord::ROLE_UNSPECIFIED), "unspecified");
}

// A newer nehostd may report a state this nehostctl does not know; it must still print.
TEST(Names, UnknownValuesStillPrint) {
  EXPECT_EQ(StateName(static_cast<ServiceState>(42)), "state_42");
  EXPECT_EQ(StopReasonName(static_cast<StopReason>(42)), "reason_42");
  EXPECT_EQ(RoleName(static_cast<GenerationRecord::Role>(42)), "role_42");
}

// The proto says an unspecified action denies and an unspecified match is exact.
TEST(Names, UnspecifiedRuleFieldsShowTheirDefaults) {
  EXPECT_EQ(ActionName(Rule::ACTION_UNSPECIFIED), "deny");
  EXPECT_EQ(MatchName(Rule::MATCH_UNSPECIFIED), "exact");
}

}  // namespace
}  // namespace nehost::agent
