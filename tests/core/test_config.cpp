// Registry, options schema and experiment-config loading: names, types, includes, overrides,
// and the exact error messages a user sees.
#include <fstream>

#include "adfw/core/config.hpp"
#include "adfw/core/registry.hpp"
#include "support.hpp"

using adfw::test::error_of;

namespace fs = std::filesystem;

namespace {

struct Widget {
  static constexpr const char* family = "test_widget";
  virtual ~Widget() = default;
  virtual double value() const = 0;
};

struct FinishOptions {
  double gloss = 0.25;
  template <class V>
  void fields(V& v) {
    v("gloss", gloss, "surface gloss", adfw::Check::range(0, 1));
  }
};

struct Gear : Widget {
  struct Options {
    int teeth = 12;
    double ratio = 1.5;
    bool oiled = false;
    std::string finish = "matte";
    std::vector<int64_t> sizes = {1, 2};
    FinishOptions coat;
    template <class V>
    void fields(V& v) {
      v("teeth", teeth, "number of teeth", adfw::Check::at_least(3));
      v("ratio", ratio, "gear ratio", adfw::Check::positive());
      v("oiled", oiled, "whether it is oiled");
      v("finish", finish, "surface finish", adfw::Check::one_of({"matte", "gloss"}));
      v("sizes", sizes, "sizes");
      v("coat", coat, "coating");
    }
  };
  explicit Gear(const Options& o) : o_(o) {}
  double value() const override { return o_.teeth * o_.ratio; }
  Options o_;
};

struct Sprocket : Widget {
  using Options = adfw::NoOptions;
  explicit Sprocket(const Options&) {}
  double value() const override { return -1; }
};

ADFW_REGISTER(Widget, Gear, "gear", "a gear");
ADFW_REGISTER(Widget, Sprocket, "sprocket", "a sprocket");

struct Machine {
  std::string name = "m";
  adfw::Slot<Widget> widget{"gear"};
  std::vector<double> weights = {1.0};
  template <class V>
  void fields(V& v) {
    v("name", name, "machine name");
    v("widget", widget, "its widget");
    v("weights", weights, "weights");
  }
};

fs::path write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
  return p;
}

Machine read_machine(const toml::table& t) {
  Machine m;
  adfw::read_options(m, t, "");
  return m;
}

}  // namespace

TEST_CASE("registry makes registered components and suggests close names", "[core][registry]") {
  auto& reg = adfw::Registry<Widget>::instance();
  REQUIRE(reg.contains("gear"));
  REQUIRE(reg.contains("sprocket"));
  auto g = reg.make("gear", toml::table{{"teeth", 20}});
  CHECK(g->value() == Approx(30.0));
  const std::string msg = error_of<adfw::ConfigError>([&] { reg.make("gaer"); });
  CHECK(msg == "unknown test_widget 'gaer'. (did you mean 'gear'?) Known: gear, sprocket.");
  const std::string far = error_of<adfw::ConfigError>([&] { reg.make("turbine"); });
  CHECK(far == "unknown test_widget 'turbine'. Known: gear, sprocket.");
}

TEST_CASE("registry records duplicate names as errors naming both origins", "[core][registry]") {
  const auto before = adfw::registration_errors().size();
  adfw::set_current_origin("other_plugin.so");
  const bool added = adfw::Registry<Widget>::instance().add<Sprocket>("gear", "again");
  adfw::set_current_origin("adfw");
  CHECK_FALSE(added);
  const auto errors = adfw::registration_errors();
  REQUIRE(errors.size() == before + 1);
  CHECK(errors.back() == "test_widget 'gear' is registered twice: by adfw and by other_plugin.so. Rename one of them.");
  // The first registration is untouched.
  CHECK(adfw::Registry<Widget>::instance().make("gear")->value() == Approx(18.0));
}

TEST_CASE("options: defaults, describe and resolved round trip", "[core][config]") {
  const auto docs = adfw::describe_options(Gear::Options{});
  REQUIRE(docs.size() == 6);
  CHECK(docs[0].name == "teeth");
  CHECK(docs[0].type == "integer");
  CHECK(docs[0].default_value == "12");
  CHECK(docs[0].constraint == ">= 3");
  CHECK(docs[3].constraint == "one of: matte, gloss");
  CHECK(docs[4].type == "array of integer");
  CHECK(docs[4].default_value == "[ 1, 2 ]");
  REQUIRE(docs[5].children.size() == 1);
  CHECK(docs[5].children[0].constraint == "[0, 1]");

  const fs::path dir = adfw::test::temp_dir("roundtrip");
  const fs::path f = write(dir / "m.toml", "name = \"x\"\n[widget]\ntype = \"gear\"\nteeth = 40\n[widget.coat]\ngloss = 0.5\n");
  auto loaded = adfw::load_config(f);
  Machine m = read_machine(loaded.table);
  CHECK(m.widget.make()->value() == Approx(60.0));
  // The resolved config has every default filled in and reads back to the same options.
  const toml::table resolved = adfw::write_options(m);
  CHECK(resolved.at_path("widget.ratio").value<double>() == 1.5);
  CHECK(resolved.at_path("widget.finish").value<std::string>() == "matte");
  const fs::path again = write(dir / "resolved.toml", adfw::to_toml_string(resolved));
  Machine m2 = read_machine(adfw::load_config(again).table);
  CHECK(adfw::to_toml_string(adfw::write_options(m2)) == adfw::to_toml_string(resolved));
  CHECK(m2.widget.options<Gear::Options>().coat.gloss == 0.5);
}

TEST_CASE("config: includes merge, the including file wins, presets and --set go on top", "[core][config]") {
  const fs::path dir = adfw::test::temp_dir("include");
  write(dir / "configs" / "base.toml", "name = \"base\"\nweights = [1.0, 2.0]\n[widget]\ntype = \"gear\"\nteeth = 10\nratio = 2.0\n");
  write(dir / "configs" / "presets" / "fast.toml", "[widget]\nratio = 3.0\n");
  const fs::path exp = write(dir / "exp.toml", "include = [\"configs/base.toml\"]\n[widget]\nteeth = 11\n");
  auto loaded = adfw::load_config(exp, {(dir / "configs" / "presets" / "fast.toml").string()},
                                  {"name=cli", "widget.oiled=true", "weights=[0.5, 0.25]", "widget.sizes=[3]"});
  Machine m = read_machine(loaded.table);
  CHECK(m.name == "cli");
  const auto& o = m.widget.options<Gear::Options>();
  CHECK(o.teeth == 11);
  CHECK(o.ratio == 3.0);
  CHECK(o.oiled);
  CHECK(o.sizes == std::vector<int64_t>{3});
  CHECK(m.weights == std::vector<double>{0.5, 0.25});
  REQUIRE(loaded.sources.included.size() == 2);
}

TEST_CASE("config: --set of a different type replaces the component's options", "[core][config]") {
  const fs::path dir = adfw::test::temp_dir("settype");
  const fs::path exp = write(dir / "exp.toml", "[widget]\ntype = \"gear\"\nteeth = 11\n");
  auto loaded = adfw::load_config(exp, {}, {"widget.type=sprocket"});
  Machine m = read_machine(loaded.table);
  CHECK(m.widget.type() == "sprocket");
  CHECK(m.widget.make()->value() == -1);
}

TEST_CASE("config: golden error messages carry file:line:col and the key path", "[core][config]") {
  const fs::path dir = adfw::test::temp_dir("errors");
  const std::string f = (dir / "bad.toml").string();
  auto try_text = [&](const std::string& text) {
    write(f, text);
    return error_of<adfw::ConfigError>([&] { read_machine(adfw::load_config(f).table); });
  };
  CHECK(try_text("[widget]\ntype = \"gear\"\nteeths = 3\n") ==
        f + ":3:10: widget.teeths: unknown key 'teeths'. (did you mean 'teeth'?) Known: teeth, ratio, oiled, finish, sizes, coat.");
  CHECK(try_text("[widget]\nteeth = \"ten\"\n") == f + ":2:9: widget.teeth: expected integer, got string \"ten\"");
  CHECK(try_text("[widget]\ntype = \"gaer\"\n") ==
        f + ":2:8: widget.type: unknown test_widget 'gaer'. (did you mean 'gear'?) Known: gear, sprocket.");
  CHECK(try_text("[widget]\nteeth = 2\n") == f + ":2:9: widget.teeth: value 2 is out of range; expected >= 3");
  CHECK(try_text("[widget]\nfinish = \"glossy\"\n") ==
        f + ":2:10: widget.finish: 'glossy' is not allowed. (did you mean 'gloss'?) Known: matte, gloss.");
  CHECK(try_text("weights = [1.0, \"a\"]\n") == f + ":1:17: weights[1]: expected float, got string \"a\"");
  CHECK(try_text("[widget.coat]\ngloss = 1.5\n") == f + ":2:9: widget.coat.gloss: value 1.5 is out of range; expected [0, 1]");
  CHECK(try_text("name = \n") .rfind(f + ":1:", 0) == 0);  // TOML syntax error with position
  CHECK(try_text("widget = 3\n") == f + ":1:10: widget: expected a table with a 'type' key, got integer 3");
  const std::string missing = error_of<adfw::ConfigError>([&] { adfw::load_config(dir / "nope.toml"); });
  CHECK(missing == "cannot open config file " + (dir / "nope.toml").string() + ": no such file or not readable");
}

TEST_CASE("config: include errors name the including file and what was tried", "[core][config]") {
  const fs::path dir = adfw::test::temp_dir("badinclude");
  const fs::path exp = write(dir / "exp.toml", "include = [\"nothere.toml\"]\n");
  const std::string msg = error_of<adfw::ConfigError>([&] { adfw::load_config(exp); });
  CHECK(msg.rfind(fs::weakly_canonical(exp).string() + ":1:11: include: cannot find included file 'nothere.toml'. Tried:", 0) == 0);
  write(dir / "a.toml", "include = [\"b.toml\"]\n");
  write(dir / "b.toml", "include = [\"a.toml\"]\n");
  CHECK(error_of<adfw::ConfigError>([&] { adfw::load_config(dir / "a.toml"); }).find("include cycle") != std::string::npos);
}

TEST_CASE("config: --set values are typed", "[core][config]") {
  toml::table t;
  adfw::apply_override(t, "a.i=3");
  adfw::apply_override(t, "a.f=0.5");
  adfw::apply_override(t, "a.b=false");
  adfw::apply_override(t, "a.s=bottle");
  adfw::apply_override(t, "a.q=\"with space\"");
  adfw::apply_override(t, "a.arr=[\"layer2\", \"layer3\"]");
  CHECK(t.at_path("a.i").is_integer());
  CHECK(t.at_path("a.f").is_floating_point());
  CHECK(t.at_path("a.b").is_boolean());
  CHECK(t.at_path("a.s").value<std::string>() == "bottle");
  CHECK(t.at_path("a.q").value<std::string>() == "with space");
  CHECK(t.at_path("a.arr").as_array()->size() == 2);
  CHECK(error_of<adfw::ConfigError>([&] { adfw::apply_override(t, "novalue"); }) ==
        "--set novalue: expected key.path=value, e.g. --set data.category=bottle");
}
