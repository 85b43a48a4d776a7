#include "agent/output.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <google/protobuf/util/type_resolver.h>
#include <google/protobuf/util/type_resolver_util.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"

namespace nehost::agent {
namespace {

using google::protobuf::Struct;
using google::protobuf::Timestamp;
using google::protobuf::Value;
using google::protobuf::util::TimeUtil;
using supervisor::v1::DoctorCheck;
using supervisor::v1::ExitRecord;
using supervisor::v1::StrayProcess;

using Rows = std::vector<std::vector<std::string>>;

// The summary paragraph of doctor is wrapped to fit a narrow terminal.
constexpr size_t kParagraphWidth = 80;
// Wide enough for every step nehostd names, so that the messages line up.
constexpr int kStepWidth = 8;

// Whether the recent exits belong in a registration block, or have a section of their own.
enum class RecentExits { kInBlock, kLeftOut };

Value Text(absl::string_view text) {
  Value value;
  value.set_string_value(std::string(text));
  return value;
}

Value Number(double number) {
  Value value;
  value.set_number_value(number);
  return value;
}

Value Boolean(bool flag) {
  Value value;
  value.set_bool_value(flag);
  return value;
}

Value Time(const Timestamp& at) { return Text(TimeUtil::ToString(at)); }

Value Object(Struct object) {
  Value value;
  *value.mutable_struct_value() = std::move(object);
  return value;
}

template <typename Items, typename ToObject>
Value ListOf(const Items& items, ToObject to_object) {
  Value value;
  google::protobuf::ListValue* list = value.mutable_list_value();  // so that none prints as []
  for (const auto& item : items) *list->add_values() = Object(to_object(item));
  return value;
}

void Set(Struct& object, const std::string& key, Value value) {
  (*object.mutable_fields())[key] = std::move(value);
}

// Protobuf keeps a Struct's fields in a hash map whose order changes from run to run;
// deterministic serialization sorts them, so the same answer always prints the same line.
std::string JsonLine(const Struct& object) {
  std::string binary;
  {
    google::protobuf::io::StringOutputStream stream(&binary);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    object.SerializeToCodedStream(&coded);
  }

  static google::protobuf::util::TypeResolver* const resolver =
      google::protobuf::util::NewTypeResolverForDescriptorPool(
          "type.googleapis.com", google::protobuf::DescriptorPool::generated_pool());
  std::string json;
  auto printed = google::protobuf::util::BinaryToJsonString(
      resolver, "type.googleapis.com/google.protobuf.Struct", binary, &json);

  // Only NaN or infinity could fail, and nothing here builds them: a broken invariant.
  if (!printed.ok()) {
    std::cerr << "nehostctl: cannot print JSON: " << printed.ToString() << "\n";
    std::abort();
  }
  return json + "\n";
}

// Columns two spaces apart, each as wide as its widest cell. The last cell of a row that is
// not empty is not padded, so no line ends in spaces.
std::string Columns(const Rows& rows) {
  std::vector<size_t> widths;
  for (const std::vector<std::string>& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }

  std::string text;
  for (const std::vector<std::string>& row : rows) {
    size_t cells = row.size();
    while (cells > 0 && row[cells - 1].empty()) --cells;
    for (size_t i = 0; i + 1 < cells; ++i) {
      absl::StrAppend(&text, row[i], std::string(widths[i] - row[i].size() + 2, ' '));
    }
    absl::StrAppend(&text, cells == 0 ? "" : row[cells - 1], "\n");
  }
  return text;
}

// Text from a server, made safe to print as part of one line: a newline would break the
// line apart, and an escape sequence could take over the terminal.
std::string OneLine(absl::string_view text) {
  std::string line(text);
  for (char& c : line) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return line;
}

std::string Indent(absl::string_view text) {
  std::string indented;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    absl::StrAppend(&indented, "  ", line, "\n");
  }
  return indented;
}

// "title:" and the rows below it, indented, or "title: none".
std::string Section(absl::string_view title, const Rows& rows) {
  if (rows.empty()) return absl::StrCat(title, ": none\n");
  return absl::StrCat(title, ":\n", Indent(Columns(rows)));
}

// Words to lines of at most width columns, unless a word is longer; newlines are kept.
std::string Wrap(absl::string_view text, size_t width) {
  std::string wrapped;
  for (absl::string_view paragraph : absl::StrSplit(text, '\n')) {
    std::string line;
    for (absl::string_view word : absl::StrSplit(paragraph, ' ', absl::SkipEmpty())) {
      if (!line.empty() && line.size() + 1 + word.size() > width) {
        absl::StrAppend(&wrapped, line, "\n");
        line.clear();
      }
      absl::StrAppend(&line, line.empty() ? "" : " ", word);
    }
    absl::StrAppend(&wrapped, line, "\n");
  }
  return wrapped;
}

absl::Time ToTime(const Timestamp& at) {
  return absl::FromUnixSeconds(at.seconds()) + absl::Nanoseconds(at.nanos());
}

std::string PidText(int32_t pid) { return pid == 0 ? "-" : absl::StrCat(pid); }

std::string ResponseName(Rule::Response response) {
  if (response == Rule::RESPONSE_UNSPECIFIED) return "";
  return absl::AsciiStrToLower(Rule::Response_Name(response));
}

std::string RuleText(const Rule& rule) {
  std::string response = ResponseName(rule.response());
  return absl::StrCat(ActionName(rule.action()), " ", rule.domain(), " (", MatchName(rule.match()),
                      response.empty() ? "" : ", " + response, ")");
}

// "crashed: killed by signal 9 (Killed)"
std::string ExitCause(const ExitRecord& exit) {
  std::string how = exit.description();
  if (how.empty() && exit.signal() != 0) how = absl::StrCat("signal ", exit.signal());
  if (how.empty()) how = absl::StrCat("exit code ", exit.exit_code());
  return absl::StrCat(StopReasonName(exit.reason()), ": ", how);
}

std::string ExitText(const ExitRecord& exit) {
  std::string text =
      absl::StrCat("generation ", exit.generation(), " pid ", exit.pid(), " ", ExitCause(exit));
  if (exit.has_at()) text = absl::StrCat(TimeUtil::ToString(exit.at()), " ", text);
  return text;
}

Struct ExitObject(const ExitRecord& exit) {
  Struct object;
  Set(object, "generation", Number(exit.generation()));
  Set(object, "pid", Number(exit.pid()));
  Set(object, "reason", Text(StopReasonName(exit.reason())));
  if (exit.signal() != 0) {
    Set(object, "signal", Number(exit.signal()));
  } else {
    Set(object, "exit_code", Number(exit.exit_code()));
  }
  if (exit.has_at()) Set(object, "at", Time(exit.at()));
  if (!exit.description().empty()) Set(object, "description", Text(exit.description()));
  return object;
}

Struct GenerationObject(const GenerationRecord& record) {
  Struct object;
  Set(object, "role", Text(RoleName(record.role())));
  Set(object, "generation", Number(record.generation()));
  Set(object, "pid", Number(record.pid()));
  Set(object, "version", Text(record.version()));
  return object;
}

// "candidate generation 4 pid 4242 version 0.2.0"
std::string GenerationText(const GenerationRecord& record) {
  std::string text = absl::StrCat(RoleName(record.role()), " generation ", record.generation(),
                                  " pid ", PidText(record.pid()));
  if (!record.version().empty()) absl::StrAppend(&text, " version ", record.version());
  return text;
}

Struct CheckObject(const DoctorCheck& check) {
  Struct object;
  Set(object, "name", Text(check.name()));
  Set(object, "ok", Boolean(check.ok()));
  Set(object, "detail", Text(check.detail()));
  return object;
}

Struct StrayObject(const StrayProcess& stray) {
  Struct object;
  Set(object, "pid", Number(stray.pid()));
  Set(object, "executable", Text(stray.executable()));
  Set(object, "why", Text(stray.why()));
  return object;
}

Struct RuleObject(const Rule& rule) {
  Struct object;
  Set(object, "domain", Text(rule.domain()));
  Set(object, "action", Text(ActionName(rule.action())));
  Set(object, "match", Text(MatchName(rule.match())));
  if (rule.response() != Rule::RESPONSE_UNSPECIFIED) {
    Set(object, "response", Text(ResponseName(rule.response())));
  }
  return object;
}

Struct ListObject(const RuleList& list) {
  Struct object;
  Set(object, "name", Text(list.name()));
  Set(object, "action", Text(ActionName(list.action())));
  if (list.response() != Rule::RESPONSE_UNSPECIFIED) {
    Set(object, "response", Text(ResponseName(list.response())));
  }
  Set(object, "count", Number(static_cast<double>(list.count())));
  return object;
}

Struct LineErrorObject(const ImportLineError& error) {
  Struct object;
  Set(object, "line", Number(static_cast<double>(error.line())));
  Set(object, "message", Text(error.message()));
  return object;
}

// The fields proto3 leaves out when they hold their default, left out here too.
void AddPresentFields(const Registration& registration, Struct& object) {
  const Registration& r = registration;
  if (!r.state_reason().empty()) Set(object, "state_reason", Text(r.state_reason()));
  if (!r.executable().empty()) Set(object, "executable", Text(r.executable()));
  if (!r.executable_sha256().empty()) {
    Set(object, "executable_sha256", Text(r.executable_sha256()));
  }
  if (!r.verified_by().empty()) Set(object, "verified_by", Text(r.verified_by()));
  if (r.start_time_ticks() != 0) Set(object, "start_time_ticks", Number(r.start_time_ticks()));
  if (r.restart_count() != 0) Set(object, "restart_count", Number(r.restart_count()));
  if (r.recent_exits_size() > 0) Set(object, "recent_exits", ListOf(r.recent_exits(), ExitObject));
  if (r.has_next_attempt_at()) Set(object, "next_attempt_at", Time(r.next_attempt_at()));
  if (!r.status_text().empty()) Set(object, "status_text", Text(r.status_text()));
  if (!r.upgrading_to().empty()) Set(object, "upgrading_to", Text(r.upgrading_to()));
  if (r.other_generations_size() > 0) {
    Set(object, "other_generations", ListOf(r.other_generations(), GenerationObject));
  }
}

Struct RegistrationObject(const Registration& registration) {
  Struct object;
  Set(object, "name", Text(registration.name()));
  Set(object, "generation", Number(registration.generation()));
  Set(object, "pid", Number(registration.pid()));
  Set(object, "version", Text(registration.version()));
  Set(object, "state", Text(StateName(registration.state())));
  Set(object, "endpoint", Text(registration.endpoint()));
  Set(object, "enabled", Boolean(registration.enabled()));
  AddPresentFields(registration, object);
  return object;
}

void AddPresentRows(const Registration& registration, RecentExits exits, Rows& rows) {
  const Registration& r = registration;
  if (!r.upgrading_to().empty()) rows.push_back({"upgrading_to:", r.upgrading_to()});
  for (int i = 0; i < r.other_generations_size(); ++i) {
    rows.push_back({i == 0 ? "other_generations:" : "", GenerationText(r.other_generations(i))});
  }
  if (!r.executable().empty()) rows.push_back({"executable:", r.executable()});
  if (!r.executable_sha256().empty()) rows.push_back({"sha256:", r.executable_sha256()});
  if (!r.verified_by().empty()) rows.push_back({"verified_by:", r.verified_by()});
  if (r.start_time_ticks() != 0) {
    rows.push_back({"start_time_ticks:", absl::StrCat(r.start_time_ticks())});
  }
  if (r.restart_count() != 0) rows.push_back({"restart_count:", absl::StrCat(r.restart_count())});
  if (!r.status_text().empty()) rows.push_back({"status_text:", r.status_text()});
  if (r.has_next_attempt_at()) {
    rows.push_back({"next_attempt_at:", TimeUtil::ToString(r.next_attempt_at())});
  }
  if (exits == RecentExits::kLeftOut) return;
  for (int i = 0; i < r.recent_exits_size(); ++i) {
    rows.push_back({i == 0 ? "recent_exits:" : "", ExitText(r.recent_exits(i))});
  }
}

Rows RegistrationRows(const Registration& registration, RecentExits exits) {
  Rows rows = {{"name:", registration.name()}, {"state:", StateName(registration.state())}};
  if (!registration.state_reason().empty()) {
    rows.push_back({"state_reason:", registration.state_reason()});
  }
  rows.push_back({"generation:", absl::StrCat(registration.generation())});
  rows.push_back({"pid:", PidText(registration.pid())});
  rows.push_back({"version:", registration.version()});
  rows.push_back({"endpoint:", registration.endpoint()});
  rows.push_back({"enabled:", registration.enabled() ? "yes" : "no"});
  AddPresentRows(registration, exits, rows);
  return rows;
}

// The reason matters most when something is wrong, and would only be noise beside "ready".
std::string StateCell(const Registration& registration) {
  std::vector<std::string> notes;
  if (registration.state() != supervisor::v1::READY && !registration.state_reason().empty()) {
    notes.push_back(registration.state_reason());
  }
  if (!registration.upgrading_to().empty()) {
    notes.push_back(absl::StrCat("upgrading to ", registration.upgrading_to()));
  }

  std::string cell = StateName(registration.state());
  if (!notes.empty()) absl::StrAppend(&cell, " (", absl::StrJoin(notes, "; "), ")");
  return cell;
}

Rows CheckRows(const DoctorResponse& doctor) {
  Rows rows;
  for (const DoctorCheck& check : doctor.checks()) {
    rows.push_back({check.ok() ? "ok" : "FAIL", check.name(), OneLine(check.detail())});
  }
  return rows;
}

Rows StrayRows(const DoctorResponse& doctor) {
  if (doctor.strays().empty()) return {};
  Rows rows = {{"PID", "EXECUTABLE", "WHY"}};
  for (const StrayProcess& stray : doctor.strays()) {
    rows.push_back({absl::StrCat(stray.pid()), stray.executable(), OneLine(stray.why())});
  }
  return rows;
}

Rows ExitRows(const Registration& registration) {
  Rows rows;
  for (const ExitRecord& exit : registration.recent_exits()) rows.push_back({ExitText(exit)});
  return rows;
}

Struct FlowRuleObject(const FlowRule& rule) {
  Struct object;
  Set(object, "name", Text(rule.name()));
  Set(object, "action", Text(FlowActionName(rule.action())));
  if (rule.cidrs_size() > 0) {
    Value cidrs;
    google::protobuf::ListValue* list = cidrs.mutable_list_value();
    for (const std::string& cidr : rule.cidrs()) *list->add_values() = Text(cidr);
    Set(object, "cidrs", std::move(cidrs));
  }
  if (rule.port_max() != 0) {
    Set(object, "port_min", Number(rule.port_min()));
    Set(object, "port_max", Number(rule.port_max()));
  }
  if (rule.protocol() != Flow::PROTOCOL_UNSPECIFIED) {
    Set(object, "protocol", Text(ProtocolName(rule.protocol())));
  }
  if (rule.direction() != Flow::DIRECTION_UNSPECIFIED) {
    Set(object, "direction", Text(DirectionName(rule.direction())));
  }
  if (!rule.domain().empty()) {
    Set(object, "domain", Text(rule.domain()));
    Set(object, "domain_match", Text(rule.domain_match() == FlowRule::SUFFIX ? "suffix" : "exact"));
  }
  if (!rule.executable().empty()) Set(object, "executable", Text(rule.executable()));
  return object;
}

Struct FlowObject(const Flow& flow) {
  Struct object;
  Set(object, "id", Number(flow.id()));
  Set(object, "protocol", Text(ProtocolName(flow.protocol())));
  Set(object, "direction", Text(DirectionName(flow.direction())));
  if (!flow.remote_address().empty()) Set(object, "remote_address", Text(flow.remote_address()));
  if (flow.remote_port() != 0) Set(object, "remote_port", Number(flow.remote_port()));
  if (!flow.hostname().empty()) Set(object, "hostname", Text(flow.hostname()));
  if (flow.local_port() != 0) Set(object, "local_port", Number(flow.local_port()));
  if (flow.pid() != 0) Set(object, "pid", Number(flow.pid()));
  if (!flow.executable().empty()) Set(object, "executable", Text(flow.executable()));
  return object;
}

Struct DnsObject(const filter::v1::DnsQuery& query) {
  Struct object;
  Set(object, "client", Text(query.client()));
  Set(object, "name", Text(query.name()));
  Set(object, "type", Text(query.type()));
  Set(object, "outcome", Text(query.outcome()));
  if (!query.rcode().empty()) Set(object, "rcode", Text(query.rcode()));
  Set(object, "upstream_latency_us", Number(query.upstream_latency_us()));
  return object;
}

template <typename Map>
Value CountsObject(const Map& counts) {
  Struct object;
  for (const auto& [name, count] : counts) Set(object, name, Number(count));
  return Object(std::move(object));
}

template <typename Repeated>
Value NumberList(const Repeated& numbers) {
  Value value;
  google::protobuf::ListValue* list = value.mutable_list_value();
  for (uint64_t number : numbers) *list->add_values() = Number(number);
  return value;
}

Struct HistogramObject(const filter::v1::Histogram& histogram) {
  Struct object;
  Set(object, "name", Text(histogram.name()));
  Set(object, "upper_bounds", NumberList(histogram.upper_bounds()));
  Set(object, "counts", NumberList(histogram.counts()));
  Set(object, "count", Number(histogram.count()));
  Set(object, "sum", Number(histogram.sum()));
  return object;
}

template <typename Map>
Rows SortedRows(const Map& counts) {
  std::vector<std::pair<std::string, uint64_t>> sorted(counts.begin(), counts.end());
  std::sort(sorted.begin(), sorted.end());
  Rows rows;
  for (const auto& [name, count] : sorted) rows.push_back({name, absl::StrCat(count)});
  return rows;
}

// "<=10:3 <=100:0 >100:1"
std::string BucketsText(const filter::v1::Histogram& histogram) {
  std::vector<std::string> buckets;
  for (int i = 0; i < histogram.counts_size(); ++i) {
    // The last count is above the last bound; a server that sent more counts than that is
    // shown the same way rather than read past the bounds.
    const int bounds = histogram.upper_bounds_size();
    const std::string bound =
        i < bounds ? absl::StrCat("<=", histogram.upper_bounds(i))
                   : absl::StrCat(">", bounds == 0 ? 0 : histogram.upper_bounds(bounds - 1));
    buckets.push_back(absl::StrCat(bound, ":", histogram.counts(i)));
  }
  return absl::StrJoin(buckets, " ");
}

// "flow 7 tcp outbound 10.0.0.1:443 host example.com executable /usr/bin/curl"
std::string FlowText(const Flow& flow) {
  std::vector<std::string> words = {absl::StrCat("flow ", flow.id())};
  if (flow.protocol() != Flow::PROTOCOL_UNSPECIFIED) words.push_back(ProtocolName(flow.protocol()));
  if (flow.direction() != Flow::DIRECTION_UNSPECIFIED) {
    words.push_back(DirectionName(flow.direction()));
  }
  if (!flow.remote_address().empty()) {
    const bool v6 = flow.remote_address().find(':') != std::string::npos;
    words.push_back(v6 ? absl::StrCat("[", OneLine(flow.remote_address()), "]:", flow.remote_port())
                       : absl::StrCat(OneLine(flow.remote_address()), ":", flow.remote_port()));
  }
  if (!flow.hostname().empty()) words.push_back(absl::StrCat("host ", OneLine(flow.hostname())));
  if (!flow.executable().empty()) {
    words.push_back(absl::StrCat("executable ", OneLine(flow.executable())));
  }
  return absl::StrJoin(words, " ");
}

std::string ServiceName(const std::string& name, const StatusResponse& status) {
  return status.service().empty() ? name : status.service();
}

}  // namespace

std::string FormatRegistration(const Registration& registration, OutputFormat format) {
  if (format == OutputFormat::kJson) return JsonLine(RegistrationObject(registration));
  return Columns(RegistrationRows(registration, RecentExits::kInBlock));
}

std::string FormatServiceList(const ListResponse& list, OutputFormat format) {
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "services", ListOf(list.registrations(), RegistrationObject));
    return JsonLine(object);
  }

  Rows rows = {{"NAME", "STATE", "GEN", "PID", "VERSION", "ENDPOINT"}};
  for (const Registration& r : list.registrations()) {
    rows.push_back({r.name(), StateCell(r), absl::StrCat(r.generation()), PidText(r.pid()),
                    r.version(), r.endpoint()});
  }
  return Columns(rows);
}

std::string FormatStatus(const std::string& name, const StatusResponse& status,
                         OutputFormat format) {
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "service", Text(ServiceName(name, status)));
    Set(object, "version", Text(status.version()));
    Set(object, "pid", Number(status.pid()));
    Set(object, "generation", Number(status.generation()));
    Set(object, "uptime_ms", Number(status.uptime_ms()));
    Set(object, "rule_count", Number(status.rule_count()));
    return JsonLine(object);
  }

  return Columns({{"service:", ServiceName(name, status)},
                  {"version:", status.version()},
                  {"pid:", PidText(status.pid())},
                  {"generation:", absl::StrCat(status.generation())},
                  {"uptime:", absl::FormatDuration(absl::Milliseconds(status.uptime_ms()))},
                  {"rule_count:", absl::StrCat(status.rule_count())}});
}

std::string FormatRules(const std::string& name, const ListRulesResponse& rules,
                        OutputFormat format) {
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "service", Text(name));
    Set(object, "rules", ListOf(rules.rules(), RuleObject));
    Set(object, "lists", ListOf(rules.lists(), ListObject));
    return JsonLine(object);
  }

  Rows rows = {{"DOMAIN", "ACTION", "MATCH", "RESPONSE"}};
  for (const Rule& rule : rules.rules()) {
    rows.push_back({rule.domain(), ActionName(rule.action()), MatchName(rule.match()),
                    ResponseName(rule.response())});
  }
  for (const RuleList& list : rules.lists()) {
    rows.push_back({absl::StrCat("list ", list.name(), " (", list.count(), " names)"),
                    ActionName(list.action()), "list", ResponseName(list.response())});
  }
  return Columns(rows);
}

std::string FormatImport(const std::string& name, const std::string& path,
                         const ImportRulesResponse& imported, OutputFormat format) {
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "service", Text(name));
    Set(object, "file", Text(path));
    Set(object, "committed", Boolean(imported.committed()));
    Set(object, "replaced", Boolean(imported.replaced()));
    Set(object, "list", Object(ListObject(imported.list())));
    Set(object, "skipped_lines", Number(static_cast<double>(imported.skipped_lines())));
    Set(object, "invalid_lines", Number(static_cast<double>(imported.invalid_lines())));
    Set(object, "errors", ListOf(imported.errors(), LineErrorObject));
    return JsonLine(object);
  }

  const RuleList& list = imported.list();
  if (!imported.committed()) {
    const char* why = list.count() == 0 ? "no valid name in it"
                                        : "it has invalid lines and --all-or-nothing was given";
    return absl::StrCat("list ", list.name(), " not imported: ", why, "\n");
  }
  return absl::StrCat(imported.replaced() ? "replaced" : "imported", " list ", list.name(), ": ",
                      list.count(), " names, ", ActionName(list.action()),
                      list.response() == Rule::RESPONSE_UNSPECIFIED
                          ? ""
                          : absl::StrCat(" with ", ResponseName(list.response())),
                      "; ", imported.invalid_lines(), " invalid lines, ", imported.skipped_lines(),
                      " skipped\n");
}

std::string FormatImportErrors(const std::string& path, const ImportRulesResponse& imported) {
  std::string text;
  for (const ImportLineError& error : imported.errors()) {
    absl::StrAppend(&text, path, ":", error.line(), ": ", OneLine(error.message()), "\n");
  }
  uint64_t unreported = imported.invalid_lines() - static_cast<uint64_t>(imported.errors_size());
  if (unreported > 0) absl::StrAppend(&text, path, ": ", unreported, " more invalid lines\n");
  return text;
}

std::string FormatRemovedList(const std::string& name, const std::string& list,
                              const RemoveListResponse& removed, OutputFormat format) {
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "service", Text(name));
    Set(object, "list", Text(list));
    Set(object, "removed", Boolean(removed.removed()));
    return JsonLine(object);
  }
  return absl::StrCat(removed.removed() ? "removed list " : "no list named ", list, "\n");
}

std::string FormatAddedRule(const std::string& name, const AddRuleResponse& added,
                            OutputFormat format) {
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "service", Text(name));
    Set(object, "added", Boolean(added.added()));
    Set(object, "rule", Object(RuleObject(added.rule())));
    return JsonLine(object);
  }

  const char* what = added.added() ? "added rule: " : "rule already in force: ";
  return absl::StrCat(what, RuleText(added.rule()), "\n");
}

std::string FormatRemovedRules(const std::string& name, const std::string& domain,
                               const RemoveRuleResponse& removed, OutputFormat format) {
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "service", Text(name));
    Set(object, "domain", Text(domain));
    Set(object, "removed", Number(removed.removed()));
    return JsonLine(object);
  }

  if (removed.removed() == 0) return absl::StrCat("no rule of ", domain, " matched\n");
  const char* rules = removed.removed() == 1 ? " rule" : " rules";
  return absl::StrCat("removed ", removed.removed(), rules, " of ", domain, "\n");
}

std::string FormatEvent(const Event& event, OutputFormat format) {
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "at", Time(event.at()));
    Set(object, "name", Text(event.name()));
    Set(object, "generation", Number(event.generation()));
    Set(object, "pid", Number(event.pid()));
    Set(object, "state", Text(StateName(event.state())));
    Set(object, "kind", Text(event.kind()));
    if (!event.message().empty()) Set(object, "message", Text(event.message()));
    if (event.has_exit()) Set(object, "exit", Object(ExitObject(event.exit())));
    return JsonLine(object);
  }

  std::string detail = event.message();
  if (detail.empty() && event.has_exit()) detail = ExitCause(event.exit());
  std::vector<std::string> parts = {ClockTime(event.at()), event.name(), event.kind(),
                                    absl::StrCat("generation=", event.generation(), " pid=",
                                                 event.pid(), " state=", StateName(event.state()))};
  if (!detail.empty()) parts.push_back(detail);
  return absl::StrCat(absl::StrJoin(parts, "  "), "\n");
}

std::string FormatProgress(const UpgradeProgress& progress, OutputFormat format) {
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "at", Time(progress.at()));
    Set(object, "step", Text(progress.step()));
    Set(object, "generation", Number(progress.generation()));
    Set(object, "pid", Number(progress.pid()));
    Set(object, "done", Boolean(progress.done()));
    if (!progress.message().empty()) Set(object, "message", Text(progress.message()));
    if (progress.done()) {
      Set(object, "succeeded", Boolean(progress.succeeded()));
      Set(object, "rolled_back", Boolean(progress.rolled_back()));
    }
    return JsonLine(object);
  }

  const std::string time = ClockTime(progress.at());
  if (progress.message().empty()) return absl::StrCat(time, " ", OneLine(progress.step()), "\n");
  return absl::StrFormat("%s %-*s %s\n", time, kStepWidth, OneLine(progress.step()),
                         OneLine(progress.message()));
}

std::string FormatLiveStep(const std::string& step, const std::string& message,
                           absl::Duration elapsed, int columns) {
  const int64_t ms = std::max<int64_t>(absl::ToInt64Milliseconds(elapsed), 0);
  std::string line = absl::StrFormat("%-*s  %6d ms", kStepWidth, OneLine(step), ms);
  if (!message.empty()) absl::StrAppend(&line, "  ", OneLine(message));

  // A line as wide as the terminal would wrap, and a carriage return could not reach back
  // to its start. Cut it without splitting a UTF-8 sequence.
  if (columns > 0 && line.size() >= static_cast<size_t>(columns)) {
    size_t end = columns - 1;
    while (end > 0 && (static_cast<unsigned char>(line[end]) & 0xC0) == 0x80) --end;
    line.resize(end);
  }
  return line;
}

std::string FormatUpgraded(const std::string& name, uint64_t generation, const std::string& version,
                           absl::Duration elapsed) {
  std::string text = absl::StrCat("upgraded ", name, " to generation ", generation);
  if (!version.empty()) absl::StrAppend(&text, " (version ", version, ")");
  return absl::StrCat(text, " in ", absl::ToInt64Milliseconds(elapsed), " ms\n");
}

std::string FormatRolledBack(const std::string& name, const std::string& reason,
                             uint64_t serving_generation) {
  return absl::StrCat("rolled back ", name, ": ", OneLine(reason), "; generation ",
                      serving_generation, " keeps serving\n");
}

std::string FormatRolledBackUnknown(const std::string& name, const std::string& reason,
                                    const std::string& why_unknown) {
  return absl::StrCat("rolled back ", name, ": ", OneLine(reason),
                      "; no generation answers a lookup: ", OneLine(why_unknown), "\n");
}

std::string FormatDoctor(const DoctorResponse& doctor, OutputFormat format) {
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "registration", Object(RegistrationObject(doctor.registration())));
    Set(object, "checks", ListOf(doctor.checks(), CheckObject));
    Set(object, "strays", ListOf(doctor.strays(), StrayObject));
    Set(object, "summary", Text(doctor.summary()));
    Set(object, "healthy", Boolean(DoctorFoundNothingWrong(doctor)));
    return JsonLine(object);
  }

  std::string text = Columns(RegistrationRows(doctor.registration(), RecentExits::kLeftOut));
  absl::StrAppend(&text, "\n", Section("checks", CheckRows(doctor)));
  absl::StrAppend(&text, "\n", Section("strays", StrayRows(doctor)));
  absl::StrAppend(&text, "\n", Section("recent exits", ExitRows(doctor.registration())));

  absl::string_view summary = absl::StripAsciiWhitespace(doctor.summary());
  if (!summary.empty()) absl::StrAppend(&text, "\n", Wrap(summary, kParagraphWidth));
  return text;
}

bool DoctorFoundNothingWrong(const DoctorResponse& doctor) {
  for (const DoctorCheck& check : doctor.checks()) {
    if (!check.ok()) return false;
  }
  return doctor.strays().empty();
}

std::string FormatReexecStarted(int32_t pid) {
  return absl::StrCat("nehostd pid ", pid, " re-executing; services keep running\n");
}

std::string FormatReexecEnded(int32_t pid, std::optional<absl::Duration> back_after,
                              OutputFormat format) {
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "pid", Number(pid));
    Set(object, "back", Boolean(back_after.has_value()));
    if (back_after) Set(object, "back_after_ms", Number(absl::ToInt64Milliseconds(*back_after)));
    return JsonLine(object);
  }

  if (!back_after) return "";
  return absl::StrCat("nehostd is back after ", absl::ToInt64Milliseconds(*back_after), " ms\n");
}

std::string FlowRuleCriteria(const FlowRule& rule) {
  std::vector<std::string> words;
  if (rule.protocol() != Flow::PROTOCOL_UNSPECIFIED) words.push_back(ProtocolName(rule.protocol()));
  if (rule.direction() != Flow::DIRECTION_UNSPECIFIED) {
    words.push_back(DirectionName(rule.direction()));
  }
  if (rule.port_max() != 0) {
    words.push_back(rule.port_min() == rule.port_max()
                        ? absl::StrCat("port ", rule.port_min())
                        : absl::StrCat("ports ", rule.port_min(), "-", rule.port_max()));
  }
  if (rule.cidrs_size() > 0)
    words.push_back(absl::StrCat("cidr ", absl::StrJoin(rule.cidrs(), ",")));
  if (!rule.domain().empty()) {
    words.push_back(absl::StrCat("domain ", rule.domain_match() == FlowRule::SUFFIX ? "*." : "",
                                 rule.domain()));
  }
  if (!rule.executable().empty()) words.push_back(absl::StrCat("executable ", rule.executable()));
  if (words.empty()) return "any flow";
  return absl::StrJoin(words, " ");
}

std::string FormatFlowRules(const std::string& name, const ListFlowRulesResponse& rules,
                            OutputFormat format) {
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "service", Text(name));
    Set(object, "default_action", Text(FlowActionName(rules.default_action())));
    Set(object, "rules", ListOf(rules.rules(), FlowRuleObject));
    return JsonLine(object);
  }

  Rows rows = {{"NAME", "ACTION", "CRITERIA"}};
  for (const FlowRule& rule : rules.rules()) {
    rows.push_back({rule.name(), FlowActionName(rule.action()), OneLine(FlowRuleCriteria(rule))});
  }
  return absl::StrCat(Columns(rows), "default: ", FlowActionName(rules.default_action()), "\n");
}

std::string FormatAddedFlowRule(const std::string& name, const AddFlowRuleResponse& added,
                                OutputFormat format) {
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "service", Text(name));
    Set(object, "added", Boolean(added.added()));
    Set(object, "rule", Object(FlowRuleObject(added.rule())));
    return JsonLine(object);
  }

  const char* what = added.added() ? "added flow rule " : "flow rule already in force: ";
  return absl::StrCat(what, added.rule().name(), ": ", FlowActionName(added.rule().action()), " ",
                      OneLine(FlowRuleCriteria(added.rule())), "\n");
}

std::string FormatRemovedFlowRule(const std::string& name, const std::string& rule, bool removed,
                                  OutputFormat format) {
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "service", Text(name));
    Set(object, "rule", Text(rule));
    Set(object, "removed", Boolean(removed));
    return JsonLine(object);
  }
  if (!removed) return absl::StrCat("no flow rule named ", OneLine(rule), "\n");
  return absl::StrCat("removed flow rule ", OneLine(rule), "\n");
}

std::string FormatDefaultFlowAction(const std::string& name, FlowRule::Action action,
                                    OutputFormat format) {
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "service", Text(name));
    Set(object, "default_action", Text(FlowActionName(action)));
    return JsonLine(object);
  }
  return absl::StrCat("default flow action of ", name, ": ", FlowActionName(action), "\n");
}

std::string FormatVerdict(const std::string& name, const Verdict& verdict, OutputFormat format) {
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "service", Text(name));
    Set(object, "flow_id", Number(verdict.flow_id()));
    Set(object, "action", Text(FlowActionName(verdict.action())));
    if (!verdict.rule().empty()) Set(object, "rule", Text(verdict.rule()));
    return JsonLine(object);
  }
  const std::string why =
      verdict.rule().empty() ? "default action" : absl::StrCat("rule ", OneLine(verdict.rule()));
  return absl::StrCat(FlowActionName(verdict.action()), " (", why, ")\n");
}

std::string FormatStats(const std::string& name, const StatsResponse& stats, OutputFormat format) {
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "service", Text(name));
    Set(object, "calls", CountsObject(stats.calls()));
    Set(object, "counters", CountsObject(stats.counters()));
    Set(object, "rule_hits", CountsObject(stats.rule_hits()));
    Set(object, "histograms", ListOf(stats.histograms(), HistogramObject));
    if (stats.has_last_checkpoint()) Set(object, "last_checkpoint", Time(stats.last_checkpoint()));
    return JsonLine(object);
  }

  std::string text = absl::StrCat("service: ", name, "\n");
  if (stats.has_last_checkpoint()) {
    absl::StrAppend(&text, "last checkpoint: ", TimeUtil::ToString(stats.last_checkpoint()), "\n");
  }
  absl::StrAppend(&text, "\n", Section("calls", SortedRows(stats.calls())));
  absl::StrAppend(&text, "\n", Section("counters", SortedRows(stats.counters())));
  absl::StrAppend(&text, "\n", Section("rule hits", SortedRows(stats.rule_hits())));
  Rows histograms;
  for (const filter::v1::Histogram& histogram : stats.histograms()) {
    histograms.push_back({histogram.name(), absl::StrCat("count ", histogram.count()),
                          absl::StrCat("sum ", histogram.sum()), BucketsText(histogram)});
  }
  absl::StrAppend(&text, "\n", Section("histograms", histograms));
  return text;
}

std::string FormatDecision(const Decision& decision, OutputFormat format) {
  const Verdict& verdict = decision.verdict();
  if (format == OutputFormat::kJson) {
    Struct object;
    Set(object, "at", Time(decision.at()));
    Set(object, "kind", Text(decision.has_dns() ? "dns" : "flow"));
    Set(object, "action", Text(FlowActionName(verdict.action())));
    if (!verdict.rule().empty()) Set(object, "rule", Text(verdict.rule()));
    if (!verdict.error().empty()) Set(object, "error", Text(verdict.error()));
    if (decision.dropped_before() != 0) {
      Set(object, "dropped_before", Number(decision.dropped_before()));
    }
    if (decision.has_dns()) {
      Set(object, "dns", Object(DnsObject(decision.dns())));
    } else {
      Set(object, "flow", Object(FlowObject(decision.flow())));
    }
    return JsonLine(object);
  }

  std::vector<std::string> parts = {ClockTime(decision.at())};
  if (decision.dropped_before() != 0) {
    parts.push_back(absl::StrCat("(", decision.dropped_before(), " decisions dropped)"));
  }
  parts.push_back(verdict.error().empty() ? FlowActionName(verdict.action()) : "error");
  if (decision.has_dns()) {
    const filter::v1::DnsQuery& query = decision.dns();
    parts.push_back(absl::StrCat("dns ", OneLine(query.name()), " ", OneLine(query.type()), " ",
                                 OneLine(query.outcome()), " from ", OneLine(query.client())));
  } else {
    parts.push_back(FlowText(decision.flow()));
  }
  if (!verdict.rule().empty()) parts.push_back(absl::StrCat("rule ", OneLine(verdict.rule())));
  if (!verdict.error().empty()) parts.push_back(OneLine(verdict.error()));
  return absl::StrCat(absl::StrJoin(parts, "  "), "\n");
}

std::string ClockTime(const Timestamp& at) {
  return absl::FormatTime("%H:%M:%E3S", ToTime(at), absl::UTCTimeZone());
}

std::string StateName(ServiceState state) {
  switch (state) {
    case supervisor::v1::SERVICE_STATE_UNSPECIFIED:
      return "unspecified";
    case supervisor::v1::STARTING:
      return "starting";
    case supervisor::v1::READY:
      return "ready";
    case supervisor::v1::DRAINING:
      return "draining";
    case supervisor::v1::STOPPING:
      return "stopping";
    case supervisor::v1::STOPPED:
      return "stopped";
    case supervisor::v1::BACKOFF:
      return "backoff";
    case supervisor::v1::FAILED:
      return "failed";
    default:  // a state added after this nehostctl was built
      return absl::StrCat("state_", static_cast<int>(state));
  }
}

std::string StopReasonName(StopReason reason) {
  switch (reason) {
    case supervisor::v1::STOP_REASON_UNSPECIFIED:
      return "unspecified";
    case supervisor::v1::REQUESTED:
      return "requested";
    case supervisor::v1::SUPERSEDED:
      return "superseded";
    case supervisor::v1::CRASHED:
      return "crashed";
    case supervisor::v1::NEVER_READY:
      return "never_ready";
    case supervisor::v1::HOST_SHUTDOWN:
      return "host_shutdown";
    default:
      return absl::StrCat("reason_", static_cast<int>(reason));
  }
}

std::string RoleName(GenerationRecord::Role role) {
  switch (role) {
    case GenerationRecord::ROLE_UNSPECIFIED:
      return "unspecified";
    case GenerationRecord::CANDIDATE:
      return "candidate";
    case GenerationRecord::DRAINING:
      return "draining";
    default:
      return absl::StrCat("role_", static_cast<int>(role));
  }
}

// An unspecified action or match means the proto's default, which the filter applies.
std::string ActionName(Rule::Action action) {
  switch (action) {
    case Rule::ALLOW:
      return "allow";
    case Rule::DENY:
    case Rule::ACTION_UNSPECIFIED:
      return "deny";
    default:
      return absl::StrCat("action_", static_cast<int>(action));
  }
}

std::string MatchName(Rule::Match match) {
  switch (match) {
    case Rule::SUFFIX:
      return "suffix";
    case Rule::EXACT:
    case Rule::MATCH_UNSPECIFIED:
      return "exact";
    default:
      return absl::StrCat("match_", static_cast<int>(match));
  }
}

std::string FlowActionName(FlowRule::Action action) {
  switch (action) {
    case FlowRule::ALLOW:
      return "allow";
    case FlowRule::DENY:
      return "deny";
    case FlowRule::ACTION_UNSPECIFIED:
      return "none";
    default:
      return absl::StrCat("action_", static_cast<int>(action));
  }
}

std::string ProtocolName(Flow::Protocol protocol) {
  switch (protocol) {
    case Flow::TCP:
      return "tcp";
    case Flow::UDP:
      return "udp";
    case Flow::ICMP:
      return "icmp";
    case Flow::PROTOCOL_UNSPECIFIED:
      return "any";
    default:
      return absl::StrCat("protocol_", static_cast<int>(protocol));
  }
}

std::string DirectionName(Flow::Direction direction) {
  switch (direction) {
    case Flow::OUTBOUND:
      return "outbound";
    case Flow::INBOUND:
      return "inbound";
    case Flow::DIRECTION_UNSPECIFIED:
      return "any";
    default:
      return absl::StrCat("direction_", static_cast<int>(direction));
  }
}

}  // namespace nehost::agent
