// Data sets shipped with adfw.
#include "adfw/core/registry.hpp"
#include "adfw/data/dataset.hpp"
#include "adfw/data/demo.hpp"

ADFW_REGISTER(adfw::Dataset, adfw::MVTecDataset, "mvtec", "MVTec AD layout (also MPDD, BTAD, magnetic_tile)");
ADFW_REGISTER(adfw::Dataset, adfw::VisaDataset, "visa", "VisA read through its split CSV (split_csv/1cls.csv)");
ADFW_REGISTER(adfw::Dataset, adfw::Ksdd2Dataset, "ksdd2", "KolektorSDD2 with mixed-supervision options (N, M)");
ADFW_REGISTER(adfw::Dataset, adfw::ManifestDataset, "manifest", "CSV manifest: path,label,split,mask,defect_type,supervision");
ADFW_REGISTER(adfw::Dataset, adfw::DemoDataset, "demo", "generated demo data in the MVTec layout (textures, objects)");
