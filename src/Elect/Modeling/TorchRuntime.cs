using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Modeling;

/// <summary>Process-wide libtorch initialisation and device / dtype parsing.</summary>
public static class TorchRuntime
{
    private static readonly object Gate = new();
    private static bool _cpu, _cuda;

    private static bool _checked;

    /// <summary>What <see cref="NativeCheck"/> could not check (null: every symbol resolved).</summary>
    public static string? NativeCheckNote { get; private set; }

    /// <summary>
    /// Initialises libtorch for <paramref name="device"/> (idempotent, thread-safe). The first call first resolves
    /// every libtorch symbol the binding needs (<see cref="NativeCheck"/>), so a mismatched libtorch fails here, naming
    /// the missing symbol, rather than mid-run.
    /// </summary>
    public static void Initialize(Device device)
    {
        lock (Gate)
        {
            if (!_checked)
            {
                NativeCheckNote = NativeCheck.Check();
                _checked = true;
            }
            if (device.type == DeviceType.CUDA)
            {
                if (_cuda) return;
                try
                {
                    torch.InitializeDeviceType(DeviceType.CUDA);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    throw new InvalidOperationException(
                        "CUDA was requested but libtorch could not initialise it: this build's libtorch has no CUDA, or no driver/GPU is present " +
                        "(build with -p:TorchBackend=cuda, or -p:TorchBackend=none with a CUDA libtorch on LD_LIBRARY_PATH; see docs/gpu.md)", e);
                }
                if (!torch.cuda.is_available())
                    throw new InvalidOperationException("CUDA was requested but libtorch reports no usable CUDA device (is a CUDA libtorch on the library path?)");
                _cuda = _cpu = true;
            }
            else
            {
                if (_cpu) return;
                torch.InitializeDeviceType(DeviceType.CPU);
                _cpu = true;
            }
        }
    }

    /// <summary>Initialises for the CPU.</summary>
    public static void Initialize() => Initialize(torch.CPU);

    /// <summary>Parses "cpu", "cuda", "cuda:1" or "auto" (CUDA when available).</summary>
    public static Device ParseDevice(string text)
    {
        var s = text.Trim().ToLowerInvariant();
        if (s == "auto")
        {
            try
            {
                Initialize(new Device(DeviceType.CUDA));
                return new Device(DeviceType.CUDA);
            }
            // any failure to bring up CUDA (CPU-only libtorch, no driver, no device) means CPU

            catch (Exception)
            {
                Initialize();
                return torch.CPU;
            }
        }
        if (s == "cpu") return torch.CPU;
        if (s == "cuda") return new Device(DeviceType.CUDA);
        if (s.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(s[5..], out var idx) && idx >= 0)
            return new Device(DeviceType.CUDA, idx);
        throw new ArgumentException($"unknown device '{text}' (expected cpu, cuda, cuda:N or auto)");
    }

    /// <summary>Parses "fp32"/"float32", "fp16"/"float16", "bf16"/"bfloat16".</summary>
    public static ScalarType ParseDType(string text) => text.Trim().ToLowerInvariant() switch
    {
        "fp32" or "float32" or "float" => ScalarType.Float32,
        "fp16" or "float16" or "half" => ScalarType.Float16,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        _ => throw new ArgumentException($"unknown dtype '{text}' (expected fp32, fp16 or bf16)"),
    };
}
