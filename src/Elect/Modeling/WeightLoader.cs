using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Modeling;

/// <summary>
/// Loads a diffusers / transformers component folder's safetensors weights into a TorchSharp
/// module with strict key matching: a missing, unexpected or wrongly shaped tensor is an error
/// naming the key and the file.
/// </summary>
public static class WeightLoader
{
    /// <summary>
    /// The weight files of a component folder: a sharded index (<c>*.safetensors.index.json</c>) if
    /// present, else the single <c>diffusion_pytorch_model.safetensors</c> / <c>model.safetensors</c>
    /// (or their <c>.fp16</c>/<c>.bf16</c> variants, or the only <c>*.safetensors</c> in the folder).
    /// </summary>
    public static IReadOnlyList<string> FindWeightFiles(string componentDir)
    {
        if (!Directory.Exists(componentDir))
            throw new DirectoryNotFoundException($"missing checkpoint folder {componentDir}");
        var indexes = Directory.GetFiles(componentDir, "*.safetensors.index.json").OrderBy(f => f, StringComparer.Ordinal).ToArray();
        if (indexes.Length > 0) return ReadShardIndex(indexes[0]);
        foreach (var name in new[] { "diffusion_pytorch_model.safetensors", "model.safetensors",
                                     "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors",
                                     "diffusion_pytorch_model.bf16.safetensors", "model.bf16.safetensors" })
        {
            var p = Path.Combine(componentDir, name);
            if (File.Exists(p)) return [p];
        }
        var any = Directory.GetFiles(componentDir, "*.safetensors");
        if (any.Length == 1) return any;
        if (any.Length > 1)
            throw new InvalidDataException($"{componentDir}: several .safetensors files and no *.safetensors.index.json to say which belong together");
        throw new FileNotFoundException($"{componentDir}: no .safetensors weights (expected diffusion_pytorch_model.safetensors, model.safetensors or a sharded *.safetensors.index.json)");
    }

    private static string[] ReadShardIndex(string indexPath)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(indexPath));
            var dir = Path.GetDirectoryName(indexPath)!;
            var files = doc.RootElement.GetProperty("weight_map").EnumerateObject()
                .Select(p => p.Value.GetString()!).Distinct().OrderBy(f => f, StringComparer.Ordinal)
                .Select(f => Path.Combine(dir, f)).ToArray();
            foreach (var f in files)
                if (!File.Exists(f)) throw new FileNotFoundException($"{indexPath} names a missing shard {Path.GetFileName(f)}", f);
            return files;
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new InvalidDataException($"{indexPath}: corrupt shard index ({e.Message})");
        }
    }

    /// <summary>
    /// Copies the weights of <paramref name="componentDir"/> into <paramref name="module"/>'s
    /// parameters and persistent buffers (converting to their dtype and device).
    /// <paramref name="ignoreUnexpected"/> names file keys that may be present and are not used
    /// (e.g. transformers' saved <c>position_ids</c>). <paramref name="rename"/> maps a file key to a
    /// module key (null: drop it).
    /// </summary>
    public static void Load(nn.Module module, string componentDir, Func<string, bool>? ignoreUnexpected = null,
                            Func<string, string?>? rename = null)
    {
        var files = FindWeightFiles(componentDir);
        var target = module.state_dict();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        using var _ = torch.no_grad();
        foreach (var file in files)
        {
            SafeTensors.ForEach(file, (info, t) =>
            {
                using (t)
                {
                    var key = rename is null ? info.Name : rename(info.Name);
                    if (key is null) return;
                    if (!target.TryGetValue(key, out var dest))
                    {
                        if (ignoreUnexpected?.Invoke(info.Name) == true) return;
                        throw new InvalidDataException($"{file}: unexpected tensor '{info.Name}' (the model built from config.json has no such weight)");
                    }
                    if (!dest.shape.SequenceEqual(t.shape))
                        throw new InvalidDataException($"{file}: tensor '{info.Name}' has shape [{string.Join(", ", t.shape)}], the model built from config.json expects [{string.Join(", ", dest.shape)}]");
                    if (!seen.Add(key))
                        throw new InvalidDataException($"{file}: tensor '{info.Name}' appears twice");
                    dest.copy_(t);
                }
            });
        }
        var missing = target.Keys.Where(k => !seen.Contains(k)).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"{componentDir}: missing tensor{(missing.Count > 1 ? "s" : "")} '{string.Join("', '", missing.Take(5))}'{(missing.Count > 5 ? $" and {missing.Count - 5} more" : "")} in {string.Join(", ", files.Select(Path.GetFileName))}");
    }
}

/// <summary>Inference set-up shared by every component.</summary>
public static class ModuleSetup
{
    /// <summary>Moves <paramref name="module"/> to the device and dtype, puts it in eval mode and freezes its parameters.</summary>
    public static T ForInference<T>(T module, ScalarType dtype, Device device) where T : nn.Module
    {
        module.to(device).to(dtype);
        module.eval();
        foreach (var p in module.parameters()) p.requires_grad = false;
        return module;
    }

    /// <summary>
    /// <see cref="ForInference"/> then the strict <see cref="WeightLoader.Load"/> of
    /// <paramref name="componentDir"/>; the module is disposed if loading fails. Modules built
    /// directly on their device with per-layer dtypes (e.g. T5 keeping its last feed-forward in
    /// float32 under fp16) pass <paramref name="builtInPlace"/> so that nothing is moved or cast.
    /// </summary>
    public static T LoadPretrained<T>(T module, string componentDir, ScalarType dtype, Device device,
                                      Func<string, bool>? ignoreUnexpected = null, Func<string, string?>? rename = null,
                                      bool builtInPlace = false) where T : nn.Module
    {
        try
        {
            if (builtInPlace)
            {
                module.eval();
                foreach (var p in module.parameters()) p.requires_grad = false;
            }
            else
            {
                ForInference(module, dtype, device);
            }
            WeightLoader.Load(module, componentDir, ignoreUnexpected, rename);
            return module;
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }
}
