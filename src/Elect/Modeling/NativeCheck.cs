using System.Runtime.InteropServices;

namespace Elect.Modeling;

/// <summary>
/// Start-up self-check of the native binding: loads TorchSharp's <c>libLibTorchSharp.so</c> with
/// <c>RTLD_NOW</c>, which makes the dynamic loader resolve every symbol it needs from libtorch at once
/// and name the first missing one. Without it a libtorch whose symbols do not match TorchSharp's (a
/// different PyTorch version on <c>LD_LIBRARY_PATH</c>) fails only when the missing function is first
/// called, possibly deep into a run. Symbol-version requirements marked weak (the one GLIBCXX_3.4.32
/// requirement the build patches, see Directory.Build.targets) do not fail the check.
/// </summary>
public static class NativeCheck
{
    private const int RtldNow = 2;

    [DllImport("libc.so.6", EntryPoint = "dlopen")]
    private static extern IntPtr DlopenC(string? file, int mode);

    [DllImport("libc.so.6", EntryPoint = "dlerror")]
    private static extern IntPtr DlerrorC();

    [DllImport("libdl.so.2", EntryPoint = "dlopen")]
    private static extern IntPtr DlopenDl(string? file, int mode);

    [DllImport("libdl.so.2", EntryPoint = "dlerror")]
    private static extern IntPtr DlerrorDl();

    /// <summary>The binding library next to the application, or null when it is not found there.</summary>
    public static string? FindBinding()
    {
        if (!OperatingSystem.IsLinux()) return null;
        var dirs = new List<string> { AppContext.BaseDirectory, Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native") };
        if (AppContext.GetData("NATIVE_DLL_SEARCH_DIRECTORIES") is string probe)
            dirs.AddRange(probe.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries));
        return dirs.Select(d => Path.Combine(d, "libLibTorchSharp.so")).FirstOrDefault(File.Exists);
    }

    /// <summary>
    /// Loads <paramref name="library"/> (default: <see cref="FindBinding"/>) with RTLD_NOW. Returns null when every
    /// symbol resolved (or there is nothing to check on this platform), else the loader's message when the
    /// failure is not about symbols (e.g. a dependency that only TorchSharp's own loading finds).
    /// </summary>
    /// <exception cref="InvalidOperationException">a symbol or symbol version is missing: the message names it.</exception>
    public static string? Check(string? library = null)
    {
        library ??= FindBinding();
        if (library is null) return OperatingSystem.IsLinux() ? "libLibTorchSharp.so not found next to the application; not checked" : null;
        string? error = Open(library);
        if (error is null) return null;
        if (error.Contains("undefined symbol", StringComparison.Ordinal) || error.Contains("version `", StringComparison.Ordinal)
            || error.Contains("version '", StringComparison.Ordinal))
            throw new InvalidOperationException(
                $"libtorch does not match this TorchSharp build: {error} (use the libtorch TorchSharp {typeof(TorchSharp.torch).Assembly.GetName().Version} was built against; see docs/gpu.md)");
        return error;
    }

    private static string? Open(string path)
    {
        // dlerror is called once first: binding the P/Invoke stub (dlsym) would otherwise clear dlopen's error
        try
        {
            DlerrorC();
            return DlopenC(path, RtldNow) != IntPtr.Zero ? null : Marshal.PtrToStringUTF8(DlerrorC()) ?? "dlopen failed";
        }
        catch (EntryPointNotFoundException)
        {
            DlerrorDl();
            return DlopenDl(path, RtldNow) != IntPtr.Zero ? null : Marshal.PtrToStringUTF8(DlerrorDl()) ?? "dlopen failed";
        }
    }
}
