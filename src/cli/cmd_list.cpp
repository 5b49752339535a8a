// `adfw list` and `adfw describe`: the registries, as the user sees them.
#include <iomanip>
#include <iostream>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "adfw/core/command.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/registry.hpp"
#include "cli_args.hpp"

namespace po = boost::program_options;

namespace adfw {
namespace {

RegistryBase& find_family(const std::string& family) {
  std::vector<std::string> names;
  for (auto* r : all_registries()) {
    if (r->family() == family) return *r;
    names.push_back(r->family());
  }
  throw ConfigError("unknown component family '" + family + "'." + suggest_from(family, names));
}

int list_cmd(const std::vector<std::string>& args) {
  po::options_description desc("options");
  desc.add_options()("family", po::value<std::string>(), "only this family")("json", "machine-readable output");
  po::positional_options_description pos;
  pos.add("family", 1);
  const std::string usage = "adfw list [family] [--json]";
  auto vm = cli::parse_command(args, desc, pos, usage);
  if (vm.count("help")) return 0;
  std::vector<RegistryBase*> regs;
  if (vm.count("family")) regs.push_back(&find_family(vm["family"].as<std::string>()));
  else regs = all_registries();
  if (vm.count("json")) {
    nlohmann::json j = nlohmann::json::object();
    for (auto* r : regs) {
      auto& arr = j[r->family()] = nlohmann::json::array();
      for (const auto& e : r->entries()) arr.push_back({{"name", e.name}, {"summary", e.summary}, {"origin", e.origin}});
    }
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  for (auto* r : regs) {
    const auto entries = r->entries();
    std::cout << r->family() << " (" << entries.size() << ")\n";
    std::size_t w = 0;
    for (const auto& e : entries) w = std::max(w, e.name.size());
    for (const auto& e : entries)
      std::cout << "  " << std::left << std::setw(int(w) + 2) << e.name << e.summary << "  [" << e.origin << "]\n";
    std::cout << "\n";
  }
  return 0;
}

void print_docs(const std::vector<OptionDoc>& docs, int indent) {
  const std::string pad(indent, ' ');
  for (const auto& d : docs) {
    std::cout << pad << d.name << " : " << d.type << " = " << d.default_value;
    if (!d.constraint.empty()) std::cout << "   (" << d.constraint << ")";
    std::cout << "\n" << pad << "    " << d.doc << "\n";
    if (!d.children.empty()) print_docs(d.children, indent + 4);
  }
}

nlohmann::json docs_json(const std::vector<OptionDoc>& docs) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& d : docs) {
    nlohmann::json o = {{"name", d.name}, {"type", d.type}, {"default", d.default_value}, {"doc", d.doc}};
    if (!d.constraint.empty()) o["constraint"] = d.constraint;
    if (!d.children.empty()) o["options"] = docs_json(d.children);
    arr.push_back(o);
  }
  return arr;
}

int describe_cmd(const std::vector<std::string>& args) {
  po::options_description desc("options");
  desc.add_options()("family", po::value<std::string>()->required(), "component family (see adfw list)")(
      "name", po::value<std::string>()->required(), "registered name")("json", "machine-readable output");
  po::positional_options_description pos;
  pos.add("family", 1).add("name", 1);
  const std::string usage = "adfw describe <family> <name> [--json]";
  auto vm = cli::parse_command(args, desc, pos, usage);
  if (vm.count("help")) return 0;
  auto& reg = find_family(vm["family"].as<std::string>());
  const std::string name = vm["name"].as<std::string>();
  const auto docs = reg.describe(name);
  std::string summary;
  for (const auto& e : reg.entries())
    if (e.name == name) summary = e.summary;
  if (vm.count("json")) {
    std::cout << nlohmann::json{{"family", reg.family()}, {"name", name}, {"summary", summary}, {"options", docs_json(docs)}}
                     .dump(2)
              << "\n";
    return 0;
  }
  std::cout << reg.family() << " '" << name << "': " << summary << "\n\n";
  if (docs.empty()) std::cout << "  (no options)\n";
  print_docs(docs, 2);
  std::cout << "\nIn an experiment file: type = \"" << name << "\" in the " << reg.family()
            << " table, then any of the options above.\n";
  return 0;
}

}  // namespace

ADFW_COMMAND("list", "list registered components by family", list_cmd);
ADFW_COMMAND("describe", "show a component's options with types, defaults and docs", describe_cmd);

}  // namespace adfw
