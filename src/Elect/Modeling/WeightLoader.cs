using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Modeling;

/// <summary>
/// Loads a diffusers / transformers component folder's weights (safetensors, or PyTorch
/// <c>.bin</c> pickles through the restricted <see cref="TorchCheckpoint"/> reader) into a TorchSharp
/// module with strict key matching: a missing, unexpected or wrongly shaped tensor is an error
/// naming the key and the file.
/// </summary>
public static class WeightLoader
{
    /// <summary>
    /// The weight files of a component folder, safetensors first (as diffusers prefers them): a
    /// sharded index (<c>*.safetensors.index.json</c>) if present, else the single
    /// <c>diffusion_pytorch_model.safetensors</c> / <c>model.safetensors</c> (or their
    /// <c>.fp16</c>/<c>.bf16</c> variants, or the only <c>*.safetensors</c> in the folder); failing
    /// those, the same for PyTorch pickles: <c>*.bin.index.json</c>, <c>diffusion_pytorch_model.bin</c>
    /// / <c>pytorch_model.bin</c> (or <c>.fp16</c>/<c>.bf16</c> variants, or the only <c>*.bin</c>),
    /// read by the restricted <see cref="TorchCheckpoint"/> reader.
    /// </summary>
    public static IReadOnlyList<string> FindWeightFiles(string componentDir)
    {
        if (!Directory.Exists(componentDir))
            throw new DirectoryNotFoundException($"missing checkpoint folder {componentDir}");
        return Find(componentDir, ".safetensors", ["diffusion_pytorch_model", "model"])
               ?? Find(componentDir, ".bin", ["diffusion_pytorch_model", "pytorch_model"])
               ?? throw new FileNotFoundException($"{componentDir}: no .safetensors weights (expected diffusion_pytorch_model.safetensors, model.safetensors or a sharded *.safetensors.index.json), nor PyTorch .bin weights (diffusion_pytorch_model.bin, pytorch_model.bin, *.bin.index.json)");
    }

    private static IReadOnlyList<string>? Find(string componentDir, string ext, string[] stems)
    {
        var indexes = Directory.GetFiles(componentDir, $"*{ext}.index.json").OrderBy(f => f, StringComparer.Ordinal).ToArray();
        if (indexes.Length > 0) return ReadShardIndex(indexes[0]);
        foreach (var variant in new[] { "", ".fp16", ".bf16" })
            foreach (var stem in stems)
            {
                var p = Path.Combine(componentDir, stem + variant + ext);
                if (File.Exists(p)) return [p];
            }
        var any = Directory.GetFiles(componentDir, $"*{ext}");
        if (any.Length == 1) return any;
        if (any.Length > 1)
            throw new InvalidDataException($"{componentDir}: several {ext} files and no *{ext}.index.json to say which belong together");
        return null;
    }

    /// <summary>
    /// The tensor names stored in weight files of either format (safetensors headers, or the
    /// state_dict keys of a torch.save pickle; no tensor data is read).
    /// </summary>
    public static HashSet<string> TensorNames(IEnumerable<string> files)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var f in files) names.UnionWith(TensorHeaders(f).Select(t => t.Name));
        return names;
    }

    /// <summary>
    /// The name, stored dtype and shape of every tensor of one weight file, from its safetensors header or the pickle of a
    /// torch.save file (no tensor data is read). <paramref name="root"/>: the entry of a torch.save dict holding the tensors
    /// (e.g. a Lightning checkpoint's <c>state_dict</c>) when the file has it, else the whole file.
    /// </summary>
    public static IReadOnlyList<(string Name, ScalarType DType, long[] Shape)> TensorHeaders(string file, string? root = null,
                                                                                          UnknownGlobals unknownGlobals = UnknownGlobals.Refuse)
    {
        if (Checkpoint.IsSafeTensors(file))
            return SafeTensors.ReadHeader(file).Tensors.Select(t => (t.Name, SafeTensors.ToScalarType(t.DType, t.Name, file), t.Shape)).ToArray();
        using var ckpt = TorchCheckpoint.Open(file, unknownGlobals);
        var within = root is not null && ckpt.Root is PickleDict top && top.ContainsKey(root) ? root : null;
        return ckpt.TensorEntries(within).Select(e => (e.Key, e.Value.DType, e.Value.Shape)).ToArray();
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
        => LoadFiles(module, FindWeightFiles(componentDir), componentDir, ignoreUnexpected, rename);

    /// <summary>
    /// <see cref="Load"/> from named weight files (safetensors or torch.save state dicts, e.g. MGIE's <c>unet.pt</c>) with
    /// the same strict matching; <paramref name="source"/> names them in the missing-tensor error.
    /// </summary>
    public static void LoadFiles(nn.Module module, IReadOnlyList<string> files, string source, Func<string, bool>? ignoreUnexpected = null,
                                 Func<string, string?>? rename = null)
    {
        var target = module.state_dict();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        using var _ = torch.no_grad();
        foreach (var file in files)
        {
            void Consume(string name, Tensor t)
            {
                using (t)
                {
                    var key = rename is null ? name : rename(name);
                    if (key is null) return;
                    if (!target.TryGetValue(key, out var dest))
                    {
                        if (ignoreUnexpected?.Invoke(name) == true) return;
                        throw new InvalidDataException($"{file}: unexpected tensor '{name}' (the model built from config.json has no such weight)");
                    }
                    if (!dest.shape.SequenceEqual(t.shape))
                        throw new InvalidDataException($"{file}: tensor '{name}' has shape [{string.Join(", ", t.shape)}], the model built from config.json expects [{string.Join(", ", dest.shape)}]");
                    if (!seen.Add(key))
                        throw new InvalidDataException($"{file}: tensor '{name}' appears twice");
                    dest.copy_(t);
                }
            }

            if (Checkpoint.IsSafeTensors(file))
            {
                SafeTensors.ForEach(file, (info, t) => Consume(info.Name, t));
                continue;
            }
            using var ckpt = TorchCheckpoint.Open(file);
            var skipped = new List<string>();
            ckpt.TensorEntries(null, skipped);
            if (skipped.Count > 0)
                throw new InvalidDataException($"{file}: entr{(skipped.Count > 1 ? "ies" : "y")} '{string.Join("', '", skipped.Take(5))}' {(skipped.Count > 1 ? "are" : "is")} not tensors; a weights file holds only a state_dict");
            ckpt.ForEachTensor(null, Consume);
        }
        var missing = target.Keys.Where(k => !seen.Contains(k)).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"{source}: missing tensor{(missing.Count > 1 ? "s" : "")} '{string.Join("', '", missing.Take(5))}'{(missing.Count > 5 ? $" and {missing.Count - 5} more" : "")} in {string.Join(", ", files.Select(Path.GetFileName))}");
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
