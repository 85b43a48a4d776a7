// flow_match_bench: how long nehost-filter takes to decide one flow in-process, in
// nanoseconds per lookup, with 10, 1,000 and 100,000 rules of mixed kinds
// (bench/flow_rules_corpus.h), through the index and through a scan of every rule, side by
// side in one run. Google Benchmark prints the figures.
//
//   cmake --build --preset default --target flow_match_bench
//   build/bin/flow_match_bench
//
//   evaluate    FlowRules::Evaluate on a flow parsed beforehand: the matching alone
//   parse+eval  ParseFlow (address parsing, hostname check) and Evaluate, as a batch does
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "bench/flow_rules_corpus.h"
#include "extension/counters.h"
#include "extension/flow_rules.h"

namespace nehost::bench {
namespace {

using filter::CounterSet;
using filter::FlowRules;
using filter::ParsedFlow;

constexpr int kFlows = 4096;

struct Corpus {
  std::unique_ptr<CounterSet> hits = std::make_unique<CounterSet>();
  std::shared_ptr<const FlowRules> rules;
  std::vector<filter::v1::Flow> flows;
};

Corpus Make(int rule_count, FlowRules::Matching matching) {
  Corpus corpus;
  std::vector<filter::v1::FlowRule> rules;
  for (const filter::v1::FlowRule& rule : MixedRules(rule_count)) {
    rules.push_back(*filter::NormalizeFlowRule(rule));
  }
  corpus.rules =
      FlowRules::Compile(rules, filter::v1::FlowRule::ALLOW, corpus.hits.get(), matching);
  corpus.flows = MixedFlows(kFlows, rule_count);
  return corpus;
}

void Evaluate(benchmark::State& state, FlowRules::Matching matching) {
  Corpus corpus = Make(static_cast<int>(state.range(0)), matching);
  std::vector<std::unique_ptr<ParsedFlow>> parsed;
  for (const filter::v1::Flow& flow : corpus.flows) {
    parsed.push_back(std::make_unique<ParsedFlow>());
    if (!filter::ParseFlow(flow, parsed.back().get()).ok()) state.SkipWithError("bad flow");
  }

  size_t i = 0;
  int64_t matched = 0;
  for (auto _ : state) {
    filter::FlowDecision decision = corpus.rules->Evaluate(*parsed[i++ % kFlows]);
    matched += decision.rule != nullptr;
    benchmark::DoNotOptimize(decision);
  }
  state.counters["matched"] = benchmark::Counter(static_cast<double>(matched) / state.iterations());
}

void ParseAndEvaluate(benchmark::State& state, FlowRules::Matching matching) {
  Corpus corpus = Make(static_cast<int>(state.range(0)), matching);
  ParsedFlow parsed;
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(filter::ParseFlow(corpus.flows[i++ % kFlows], &parsed));
    benchmark::DoNotOptimize(corpus.rules->Evaluate(parsed));
  }
}

void BM_EvaluateIndexed(benchmark::State& state) { Evaluate(state, FlowRules::Matching::kIndexed); }
void BM_EvaluateScan(benchmark::State& state) { Evaluate(state, FlowRules::Matching::kScan); }
void BM_ParseAndEvaluateIndexed(benchmark::State& state) {
  ParseAndEvaluate(state, FlowRules::Matching::kIndexed);
}

BENCHMARK(BM_EvaluateIndexed)->Arg(10)->Arg(1000)->Arg(100000);
BENCHMARK(BM_EvaluateScan)->Arg(10)->Arg(1000)->Arg(100000);
BENCHMARK(BM_ParseAndEvaluateIndexed)->Arg(10)->Arg(1000)->Arg(100000);

}  // namespace
}  // namespace nehost::bench

BENCHMARK_MAIN();
