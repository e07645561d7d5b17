using System.Text.Json;
using System.Text.RegularExpressions;

namespace Elect.Runner.Hub;

/// <summary>
/// Which files of a repository listing to download.
/// <para>A diffusers pipeline (a <c>model_index.json</c> at the root) gets <c>model_index.json</c> and, in each
/// component folder it names (except those elect never loads: <c>safety_checker</c>, <c>feature_extractor</c>,
/// <c>image_encoder</c>), every config / scheduler / tokenizer file and ONE weight format: safetensors when the
/// folder has any (never also the <c>.bin</c>, <c>.ckpt</c>, <c>.msgpack</c>, <c>.onnx</c>, <c>.h5</c> copies), else
/// PyTorch <c>.bin</c>. Root-level single-file copies (e.g. instruct-pix2pix's <c>.ckpt</c>), READMEs and images
/// are skipped. Any other repository is treated as one component (per folder).</para>
/// <para>Precision: <c>fp16</c> (default) takes a folder's <c>*.fp16.safetensors</c> variant when it has one, else the
/// full-precision file; <c>fp32</c> takes the full-precision file when there is one. fp16 is the default because
/// the default dtype on CUDA is fp16, where full-precision weights are rounded to the same fp16 values at load:
/// identical results for half the download. On the CPU (fp32) fp16 weights are upcast exactly, but differ from
/// the fp32 checkpoint by that rounding: pass <c>--precision fp32</c> for the reference's fp32 numbers.</para>
/// </summary>
public static class HubSelection
{
    private static readonly string[] UnusedComponents = ["safety_checker", "feature_extractor", "image_encoder"];
    private static readonly string[] OtherWeightSuffixes = [".ckpt", ".msgpack", ".onnx", ".onnx_data", ".h5", ".pb", ".pt", ".pth", ".tflite", ".ot", ".gguf"];
    private static readonly string[] SkippedSuffixes = [".md", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".mp4"];

    /// <summary>The files to download. <paramref name="modelIndex"/>: the text of <c>model_index.json</c> when the repository has one.</summary>
    public static IReadOnlyList<HubFile> Select(IReadOnlyList<HubFile> files, string? modelIndex, string precision = "fp16", IReadOnlyList<string>? include = null)
    {
        if (precision is not ("fp16" or "fp32")) throw new ArgumentException($"unknown precision '{precision}' (fp16 or fp32)", nameof(precision));
        if (include is { Count: > 0 })
        {
            var globs = include.Select(Glob).ToArray();
            return files.Where(f => globs.Any(g => g.IsMatch(f.Path))).ToArray();
        }
        IEnumerable<HubFile> candidates = files.Where(f => !f.Path.StartsWith('.') && !SkippedSuffixes.Any(s => f.Path.EndsWith(s, StringComparison.OrdinalIgnoreCase)));
        if (modelIndex is not null)
        {
            var components = Components(modelIndex);
            candidates = candidates.Where(f => f.Path == "model_index.json" || (Folder(f.Path) is { } dir && components.Contains(dir.Split('/')[0])));
        }
        var chosen = new List<HubFile>();
        foreach (var group in candidates.GroupBy(f => Folder(f.Path) ?? ""))
            chosen.AddRange(SelectInFolder(group.ToArray(), precision));
        return chosen.OrderBy(f => f.Path, StringComparer.Ordinal).ToArray();
    }

    /// <summary>The component folders <c>model_index.json</c> names (entries whose value is a [library, class] pair), less those elect never loads.</summary>
    public static HashSet<string> Components(string modelIndex)
    {
        using var doc = JsonDocument.Parse(modelIndex);
        var set = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in doc.RootElement.EnumerateObject())
            if (!p.Name.StartsWith('_') && p.Value.ValueKind == JsonValueKind.Array && p.Value.GetArrayLength() == 2
                && p.Value[0].ValueKind == JsonValueKind.String && !UnusedComponents.Contains(p.Name))
                set.Add(p.Name);
        return set;
    }

    private static string? Folder(string path) => path.LastIndexOf('/') is var i and > 0 ? path[..i] : null;

    private enum Format { Safetensors, Bin, Other, None }

    private static Format FormatOf(string path)
    {
        var name = path[(path.LastIndexOf('/') + 1)..];
        if (name.EndsWith(".safetensors", StringComparison.Ordinal) || Regex.IsMatch(name, @"\.safetensors\.index(\.[a-z0-9]+)?\.json$")) return Format.Safetensors;
        if (name.EndsWith(".bin", StringComparison.Ordinal) || Regex.IsMatch(name, @"\.bin\.index(\.[a-z0-9]+)?\.json$")) return Format.Bin;
        if (OtherWeightSuffixes.Any(s => name.EndsWith(s, StringComparison.OrdinalIgnoreCase))) return Format.Other;
        return Format.None;
    }

    /// <summary>"fp16", "bf16", ... for diffusers variant names (<c>x.fp16.safetensors</c>, <c>x.fp16-00001-of-00002.safetensors</c>, <c>x.safetensors.index.fp16.json</c>), else "".</summary>
    private static string VariantOf(string path)
    {
        var name = path[(path.LastIndexOf('/') + 1)..];
        var m = Regex.Match(name, @"\.(fp16|bf16|fp32|ema|non_ema|flax)(\.|-\d{5}-of-\d{5}\.)(safetensors|bin)$");
        if (m.Success) return m.Groups[1].Value;
        m = Regex.Match(name, @"\.index\.(fp16|bf16|fp32|ema|non_ema)\.json$");
        return m.Success ? m.Groups[1].Value : "";
    }

    private static IEnumerable<HubFile> SelectInFolder(HubFile[] files, string precision)
    {
        var weights = files.Where(f => FormatOf(f.Path) != Format.None).ToArray();
        var rest = files.Where(f => FormatOf(f.Path) == Format.None);
        var format = weights.Any(f => FormatOf(f.Path) == Format.Safetensors) ? Format.Safetensors
            : weights.Any(f => FormatOf(f.Path) == Format.Bin) ? Format.Bin : Format.Other;
        var ofFormat = weights.Where(f => FormatOf(f.Path) == format).ToArray();
        if (format == Format.Other) return rest.Concat(ofFormat);   // a folder of other weights only: the user asked for this repository
        var variants = ofFormat.Select(f => VariantOf(f.Path)).Distinct().ToArray();
        string variant = precision == "fp16" && variants.Contains("fp16") ? "fp16"
            : variants.Contains("") ? ""
            : variants.Contains("fp16") ? "fp16" : variants.Order(StringComparer.Ordinal).First();
        return rest.Concat(ofFormat.Where(f => VariantOf(f.Path) == variant));
    }

    /// <summary>A glob over repository paths: <c>*</c> and <c>?</c> within a path segment, <c>**</c> across segments.</summary>
    public static Regex Glob(string glob)
    {
        var sb = new System.Text.StringBuilder("^");
        for (int i = 0; i < glob.Length; i++)
        {
            char c = glob[i];
            if (c == '*' && i + 1 < glob.Length && glob[i + 1] == '*')
            {
                sb.Append(".*");
                i++;
                if (i + 1 < glob.Length && glob[i + 1] == '/') i++;
            }
            else if (c == '*') sb.Append("[^/]*");
            else if (c == '?') sb.Append("[^/]");
            else sb.Append(Regex.Escape(c.ToString()));
        }
        return new Regex(sb.Append('$').ToString(), RegexOptions.CultureInvariant);
    }
}

/// <summary>Where a family's published checkpoint lives on the Hub, and what the user must fetch elsewhere.</summary>
/// <param name="RepoId">The Hub repository (null: nothing on the Hub).</param>
/// <param name="LocalDir">Where it lands (the family's default <c>--model-path</c> or tokenizer folder).</param>
/// <param name="Include">Globs of the files to take (null: <see cref="HubSelection"/>'s rule).</param>
/// <param name="Note">What else the family needs, from where (printed after the download).</param>
/// <param name="Size">The approximate download, for the README and the log.</param>
public sealed record FamilyDownload(string? RepoId, string LocalDir, IReadOnlyList<string>? Include, string? Note, string Size);

/// <summary>The published checkpoints of the registered families (a test checks that every family has an entry).</summary>
public static class FamilyDownloads
{
    public static IReadOnlyDictionary<string, FamilyDownload> All { get; } = new Dictionary<string, FamilyDownload>
    {
        ["instructpix2pix"] = new("timbrooks/instruct-pix2pix", Path.Combine("checkpoints", "instructpix2pix"), null, null, "about 4.3 GB (SD 1.5 UNet, VAE and CLIP text encoder in full precision; 2.1 GB where fp16 variants exist)"),
        ["magicbrush"] = new("vinesmsuic/magicbrush-jul7", Path.Combine("checkpoints", "magicbrush"), null, null, "about 4.3 GB (same architecture as instructpix2pix)"),
        ["ultraedit"] = new("BleachNick/SD3_UltraEdit_freeform", Path.Combine("checkpoints", "ultraedit"), null,
            "the T5-XXL text encoder is most of the download", "roughly 16 GB in fp16 (SD3-medium transformer, two CLIP encoders, T5-XXL), twice that in fp32"),
        ["instructdiffusion"] = new("openai/clip-vit-large-patch14", Pipelines.ModelFamilies.DefaultClipFolder,
            ["config.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"],
            "the InstructDiffusion weights are not in a Hub repository elect knows: download v1-5-pruned-emaonly-adaption-task.ckpt (several GB) from the InstructDiffusion authors' release " +
            "(github.com/cientgu/InstructDiffusion, README 'Pre-trained models') to checkpoints/v1-5-pruned-emaonly-adaption-task.ckpt; this command fetched only the CLIP tokenizer and text-encoder config it needs",
            "about 4 MB (CLIP tokenizer and config; the .ckpt comes from the authors' release)"),
        ["mgie"] = new(null, Path.Combine("checkpoints", "mgie"), null,
            "MGIE cannot be downloaded by elect: put into checkpoints/mgie (1) LLaVA-7B-v1/: LLaVA-Lightning-7B-v1-1 merged from LLaMA-7B (Hugging Face format) and the delta liuhaotian/LLaVA-Lightning-7B-delta-v1-1 " +
            "with LLaVA's 'python -m llava.model.apply_delta --base <llama-7b> --target checkpoints/mgie/LLaVA-7B-v1 --delta liuhaotian/LLaVA-Lightning-7B-delta-v1-1'; " +
            "(2) mgie_7b/mllm.pt and mgie_7b/unet.pt: extract https://docs-assets.developer.apple.com/ml-research/models/mgie/mgie_7b.tar.gz (Apple's CDN) there; " +
            "(3) clip-vit-large-patch14/: 'elect download openai/clip-vit-large-patch14 --local-dir checkpoints/mgie/clip-vit-large-patch14 --include \"*.json\" \"*.txt\" model.safetensors'; " +
            "(4) instruct-pix2pix/: 'elect download instructpix2pix --local-dir checkpoints/mgie/instruct-pix2pix' (or keep checkpoints/instructpix2pix beside it); the README's section 'MGIE' has the details",
            "about 14 GB (LLaVA-7B fp16) + 0.5 GB (mllm.pt) + 1.7 GB (unet.pt) + 1.7 GB (CLIP ViT-L/14) + the InstructPix2Pix VAE"),
        ["demo"] = new(null, "", null, "the demo model is built in memory with random weights: there is nothing to download", "0"),
    };

    /// <summary>The entry of a registered family, or null (then the argument is a repository id).</summary>
    public static FamilyDownload? Find(string name) => All.TryGetValue(name.Trim().ToLowerInvariant(), out var d) ? d : null;
}
