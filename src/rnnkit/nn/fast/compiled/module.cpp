// The extension's one Python module: the LSTM's functions at the top (ext.lstm_forward_loop, ...),
// the one-state loop's argument types in ext.one_state, the GRU's in ext.gru, the Elman cell's in
// ext.elman; ext.Linear is ext.one_state.Linear (linear.h), the product type of every cell.
// build.py compiles this file with gru.cpp and elman.cpp into one extension.
//
// lstm.cpp defines the module itself (PYBIND11_MODULE), and an extension may define it only once.
// Until lstm.cpp gives its bindings as a function (then it is compiled on its own like the other
// cells and the include below goes), it is included here with its PYBIND11_MODULE renamed to a
// plain function, bind_lstm, which the module below calls.

#include <torch/extension.h>

#include "one_state_loop.h"

namespace rnnkit::cpu {
void bind_gru(pybind11::module_& m);    // gru.cpp
void bind_elman(pybind11::module_& m);  // elman.cpp
}  // namespace rnnkit::cpu

#pragma push_macro("PYBIND11_MODULE")
#undef PYBIND11_MODULE
#define PYBIND11_MODULE(name, variable, ...) static void bind_lstm(pybind11::module_& variable)
#include "lstm.cpp"
#pragma pop_macro("PYBIND11_MODULE")

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  bind_lstm(m);
  auto one_state = m.def_submodule("one_state", "the time loop of the cells whose state is h");
  rnnkit::cpu::bind_one_state_loop(one_state);
  m.attr("Linear") = one_state.attr("Linear");  // the LSTM's product: the same type (linear.h)
  auto gru = m.def_submodule("gru", "the GRU and layer-norm GRU time loops");
  rnnkit::cpu::bind_gru(gru);
  auto elman = m.def_submodule("elman", "the Elman cell's time loop (tanh, relu)");
  rnnkit::cpu::bind_elman(elman);
}
