#include "cli_args.hpp"

#include <iostream>

#include "adfw/core/error.hpp"

namespace po = boost::program_options;

namespace adfw::cli {

po::variables_map parse_command(const std::vector<std::string>& args, po::options_description& shown,
                                const po::positional_options_description& pos, const std::string& usage,
                                const po::options_description& hidden, const std::string& help_text) {
  shown.add_options()("help,h", "show this help");
  po::options_description all;
  all.add(shown).add(hidden);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm);
    if (vm.count("help")) {
      std::cout << "usage: " << usage << "\n\n";
      if (!help_text.empty()) std::cout << help_text << "\n\n";
      std::cout << shown << "\n";
      return vm;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw ConfigError(std::string(e.what()) + "\nusage: " + usage);
  }
  return vm;
}

}  // namespace adfw::cli
