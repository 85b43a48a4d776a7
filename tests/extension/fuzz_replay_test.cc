// Runs a libFuzzer entry point over a seed corpus, and over variants of each seed with bytes
// flipped, cut and repeated by a fixed-seed generator, so that CI covers the fuzz target with
// any compiler. A crash or a sanitizer report fails the test; the seed and the variant are
// printed first.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

constexpr int kVariantsPerSeed = 3000;

std::vector<uint8_t> ReadSeed(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::vector<uint8_t> Mutate(std::vector<uint8_t> bytes, std::mt19937& random) {
  int edits = 1 + static_cast<int>(random() % 4);
  for (int i = 0; i < edits && !bytes.empty(); ++i) {
    size_t at = random() % bytes.size();
    switch (random() % 4) {
      case 0:
        bytes[at] ^= static_cast<uint8_t>(1u << (random() % 8));
        break;
      case 1:
        bytes[at] = static_cast<uint8_t>(random());
        break;
      case 2:
        bytes.resize(at);
        break;
      case 3:
        bytes.insert(bytes.begin() + at, bytes.begin(), bytes.begin() + at);
        break;
    }
  }
  return bytes;
}

TEST(FuzzReplay, SeedsAndTheirVariantsRunWithoutFault) {
  std::vector<std::filesystem::path> seeds;
  for (const auto& entry : std::filesystem::directory_iterator(CORPUS_DIR)) {
    seeds.push_back(entry.path());
  }
  std::sort(seeds.begin(), seeds.end());
  ASSERT_GE(seeds.size(), 5u) << "corpus missing at " << CORPUS_DIR;

  std::mt19937 random(20261204);
  for (const std::filesystem::path& seed : seeds) {
    std::vector<uint8_t> bytes = ReadSeed(seed);
    LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    for (int i = 0; i < kVariantsPerSeed; ++i) {
      std::vector<uint8_t> variant = Mutate(bytes, random);
      LLVMFuzzerTestOneInput(variant.data(), variant.size());
    }
  }
}

}  // namespace
