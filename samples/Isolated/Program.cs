// <readme>
using Interop.Sessions;

using var session = PythonSession.Isolated();                  // or PythonSession.Create(SessionMode.Auto)
using var module = session.LoadFile(Path.Combine(AppContext.BaseDirectory, "seed_chain.py"));
using var y = module.GetAttr("compute").Call(new float[,] { { 1, 2 }, { 3, 4 } });
ReadOnlySpan<float> values = y.AsReadOnlySpan<float>();         // read in place from shared memory
// </readme>

Console.WriteLine($"softmax rows: [{string.Join(", ", values.ToArray().Select(v => v.ToString("F4", System.Globalization.CultureInfo.InvariantCulture)))}]");
