// Stage times: collected only between start() and stop(), per stage name, nested stages counted
// in both, from several threads at once.
#include <thread>
#include <vector>

#include "adfw/core/stages.hpp"
#include "support.hpp"

using adfw::ScopedStage;
using adfw::StageTimes;

TEST_CASE("stage times: calls and seconds per stage, only while collecting", "[core][stages]") {
  { ScopedStage s("before"); }  // not collecting yet: not recorded
  StageTimes::start();
  CHECK(StageTimes::active());
  for (int i = 0; i < 3; ++i) {
    ScopedStage outer("outer");
    ScopedStage inner("inner");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t)
    workers.emplace_back([] {
      for (int i = 0; i < 100; ++i) ScopedStage s("threads");
    });
  for (auto& w : workers) w.join();
  const auto totals = StageTimes::stop();
  CHECK_FALSE(StageTimes::active());
  REQUIRE(totals.size() == 3);
  CHECK(totals.count("before") == 0);
  CHECK(totals.at("outer").calls == 3);
  CHECK(totals.at("inner").calls == 3);
  CHECK(totals.at("threads").calls == 400);
  // The inner scope is part of the outer one, and both include the sleeps.
  CHECK(totals.at("inner").seconds >= 0.006);
  CHECK(totals.at("outer").seconds >= totals.at("inner").seconds);
  { ScopedStage s("after"); }  // stopped: not recorded, and the next start() begins empty
  StageTimes::start();
  CHECK(StageTimes::stop().empty());
}
