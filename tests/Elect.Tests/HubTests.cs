using System.Text;
using Elect.Runner.Hub;
using Xunit;

namespace Elect.Tests;

/// <summary>
/// The Hub client against <see cref="MockHub"/> (127.0.0.1 only, started and stopped by each test). One class, so
/// the tests that set <c>HF_ENDPOINT</c> / <c>HF_TOKEN</c> run one after another.
/// </summary>
[Collection("hub")]
public sealed class HubTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "elect-hub-" + Guid.NewGuid().ToString("N"));

    public HubTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        Environment.SetEnvironmentVariable("HF_ENDPOINT", null);
        Environment.SetEnvironmentVariable("HF_TOKEN", null);
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static byte[] Bytes(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    /// <summary>A diffusers-layout folder: model_index.json, configs, tokenizer files and one safetensors per component.</summary>
    private string WriteFolder(string name)
    {
        var root = Path.Combine(_dir, name);
        void Put(string rel, byte[] data)
        {
            var p = Path.Combine(root, rel);
            Directory.CreateDirectory(Path.GetDirectoryName(p)!);
            File.WriteAllBytes(p, data);
        }
        Put("model_index.json", Encoding.UTF8.GetBytes("""{"_class_name": "StableDiffusionInstructPix2PixPipeline", "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"], "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"], "safety_checker": [null, null]}"""));
        Put("unet/config.json", Encoding.UTF8.GetBytes("""{"in_channels": 8}"""));
        Put("unet/diffusion_pytorch_model.safetensors", Bytes(300_000, 1));
        Put("vae/config.json", Encoding.UTF8.GetBytes("""{"latent_channels": 4}"""));
        Put("vae/diffusion_pytorch_model.safetensors", Bytes(70_000, 2));
        Put("tokenizer/vocab.json", Bytes(5000, 3));   // over the LFS threshold: served through the CDN redirect
        Put("tokenizer/merges.txt", Encoding.UTF8.GetBytes("#version: 0.2\na b\n"));
        Put("scheduler/scheduler_config.json", Encoding.UTF8.GetBytes("""{"beta_start": 0.00085}"""));
        return root;
    }

    private static void AssertSameFolder(string expected, string actual)
    {
        var a = Directory.EnumerateFiles(expected, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(expected, f)).Order().ToArray();
        var b = Directory.EnumerateFiles(actual, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(actual, f)).Order().ToArray();
        Assert.Equal(a, b);
        foreach (var f in a) Assert.True(File.ReadAllBytes(Path.Combine(expected, f)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(actual, f))), f);
    }

    private static HubFile F(string path, bool lfs = true) => new(path, 10, lfs ? new string('a', 64) : null, null);

    [Fact]
    public void Selection_takes_one_weight_format_per_component_and_only_the_components_elect_loads()
    {
        HubFile[] files =
        [
            F(".gitattributes", false), F("README.md", false), F("model_index.json", false), F("instruct-pix2pix-00-22000.ckpt"), F("instruct-pix2pix-00-22000.safetensors"),
            F("safety_checker/config.json", false), F("safety_checker/model.safetensors"), F("feature_extractor/preprocessor_config.json", false),
            F("unet/config.json", false), F("unet/diffusion_pytorch_model.bin"), F("unet/diffusion_pytorch_model.safetensors"), F("unet/diffusion_pytorch_model.fp16.safetensors"),
            F("unet/diffusion_flax_model.msgpack"), F("vae/config.json", false), F("vae/diffusion_pytorch_model.bin"), F("vae/diffusion_pytorch_model.safetensors"),
            F("text_encoder/config.json", false), F("text_encoder/pytorch_model.bin"), F("text_encoder/model.onnx"),
            F("text_encoder_3/config.json", false), F("text_encoder_3/model.safetensors.index.json", false), F("text_encoder_3/model-00001-of-00002.safetensors"),
            F("text_encoder_3/model-00002-of-00002.safetensors"), F("text_encoder_3/model.safetensors.index.fp16.json", false),
            F("text_encoder_3/model.fp16-00001-of-00002.safetensors"), F("text_encoder_3/model.fp16-00002-of-00002.safetensors"),
            F("tokenizer/vocab.json", false), F("tokenizer/merges.txt", false), F("tokenizer/special_tokens_map.json", false), F("scheduler/scheduler_config.json", false),
        ];
        const string index = """{"_class_name": "X", "unet": ["diffusers", "U"], "vae": ["diffusers", "V"], "text_encoder": ["transformers", "T"], "text_encoder_3": ["transformers", "T5"], "tokenizer": ["transformers", "C"], "scheduler": ["diffusers", "S"], "safety_checker": ["x", "y"], "feature_extractor": ["x", "y"]}""";
        var fp16 = HubSelection.Select(files, index).Select(f => f.Path).ToArray();
        Assert.Equal(new[]
        {
            "model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json", "text_encoder/pytorch_model.bin",
            "text_encoder_3/config.json", "text_encoder_3/model.fp16-00001-of-00002.safetensors", "text_encoder_3/model.fp16-00002-of-00002.safetensors", "text_encoder_3/model.safetensors.index.fp16.json",
            "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/vocab.json",
            "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors", "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
        }, fp16);
        var fp32 = HubSelection.Select(files, index, "fp32").Select(f => f.Path).ToArray();
        Assert.Contains("unet/diffusion_pytorch_model.safetensors", fp32);
        Assert.DoesNotContain("unet/diffusion_pytorch_model.fp16.safetensors", fp32);
        Assert.Contains("text_encoder_3/model.safetensors.index.json", fp32);
        Assert.DoesNotContain("text_encoder_3/model.fp16-00001-of-00002.safetensors", fp32);
        Assert.Equal(["unet/config.json", "vae/config.json"], HubSelection.Select(files, index, include: ["*/config.json"]).Select(f => f.Path).Where(p => !p.StartsWith("text", StringComparison.Ordinal) && !p.StartsWith("safety", StringComparison.Ordinal)));
        Assert.Equal(["instruct-pix2pix-00-22000.ckpt"], HubSelection.Select(files, index, include: ["*.ckpt"]).Select(f => f.Path));
        Assert.Throws<ArgumentException>(() => HubSelection.Select(files, index, "fp8"));
    }

    [Fact]
    public void Every_registered_family_says_where_its_checkpoint_comes_from()
    {
        Assert.Equal(Elect.Pipelines.ModelFamilies.Names.Order(), FamilyDownloads.All.Keys.Order());
    }

    [Fact]
    public async Task Lists_and_downloads_a_diffusers_folder_byte_for_byte_from_HF_ENDPOINT()
    {
        var source = WriteFolder("source");
        using var hub = new MockHub();
        hub.AddFolder("org/name", source);
        Environment.SetEnvironmentVariable("HF_ENDPOINT", hub.Endpoint);
        using var client = new HubClient();
        Assert.Equal(hub.Endpoint, client.Endpoint);
        var info = await client.ListAsync("org/name");
        Assert.Equal(MockHub.Commit, info.Commit);
        Assert.Equal(8, info.Files.Count);
        Assert.True(info.Files.Single(f => f.Path == "unet/diffusion_pytorch_model.safetensors").IsLfs);
        var target = Path.Combine(_dir, "download");
        await client.DownloadRepoAsync("org/name", target);
        AssertSameFolder(source, target);
        // files come from the listed commit, LFS ones through the redirect
        Assert.Contains(hub.Log, l => l.StartsWith($"GET /org/name/resolve/{MockHub.Commit}/unet/diffusion_pytorch_model.safetensors", StringComparison.Ordinal));
        Assert.Contains(hub.Log, l => l.StartsWith("GET /cdn/", StringComparison.Ordinal));
        // a second run verifies what is there and transfers nothing
        int before = hub.Log.Count;
        await client.DownloadRepoAsync("org/name", target);
        Assert.Equal(before + 1, hub.Log.Count);   // the listing only
    }

    [Fact]
    public async Task A_cut_connection_is_resumed_with_a_range_request()
    {
        var source = WriteFolder("source");
        using var hub = new MockHub();
        hub.AddFolder("org/name", source);
        const string weights = "unet/diffusion_pytorch_model.safetensors";
        var target = Path.Combine(_dir, "download");

        // one attempt: the cut leaves the partial file and a message saying how to resume
        hub.CutOnce[weights] = 100_000;
        using (var once = new HubClient(hub.Endpoint) { MaxAttempts = 1 })
        {
            var e = await Assert.ThrowsAsync<HubException>(() => once.DownloadRepoAsync("org/name", target));
            Assert.Contains(weights, e.Message);
            Assert.Contains("resume from 100000 bytes", e.Message);
        }
        Assert.Equal(100_000, new FileInfo(Path.Combine(target, weights + ".incomplete")).Length);
        Assert.False(File.Exists(Path.Combine(target, weights)));
        using var client = new HubClient(hub.Endpoint);
        await client.DownloadRepoAsync("org/name", target);
        Assert.Contains(hub.Log, l => l.StartsWith("GET /cdn/", StringComparison.Ordinal) && l.Contains("bytes=100000-", StringComparison.Ordinal));
        AssertSameFolder(source, target);

        // within one run: the default attempts resume by themselves
        var again = Path.Combine(_dir, "again");
        hub.CutOnce["vae/diffusion_pytorch_model.safetensors"] = 5_000;
        await client.DownloadRepoAsync("org/name", again);
        Assert.Contains(hub.Log, l => l.Contains("bytes=5000-", StringComparison.Ordinal));
        AssertSameFolder(source, again);
    }

    [Fact]
    public async Task A_corrupted_file_is_refused_and_removed()
    {
        var source = WriteFolder("source");
        using var hub = new MockHub();
        hub.AddFolder("org/name", source);
        var target = Path.Combine(_dir, "download");
        using var client = new HubClient(hub.Endpoint);
        foreach (var (path, kind) in new[] { ("vae/diffusion_pytorch_model.safetensors", "sha256"), ("unet/config.json", "git blob id") })
        {
            hub.Corrupt.Clear();
            hub.Corrupt.Add(path);
            if (Directory.Exists(target)) Directory.Delete(target, true);
            var e = await Assert.ThrowsAsync<HubException>(() => client.DownloadRepoAsync("org/name", target));
            Assert.Contains($"checksum mismatch for '{path}'", e.Message);
            Assert.Contains(kind, e.Message);
            Assert.False(File.Exists(Path.Combine(target, path)));
            Assert.False(File.Exists(Path.Combine(target, path + ".incomplete")));
        }
        // without checksums in the listing, the resolve answer's X-Linked-Etag / ETag are checked
        hub.NamesOnly = true;
        foreach (var (path, kind) in new[] { ("vae/diffusion_pytorch_model.safetensors", "sha256"), ("unet/config.json", "git blob id") })
        {
            hub.Corrupt.Clear();
            hub.Corrupt.Add(path);
            if (Directory.Exists(target)) Directory.Delete(target, true);
            var e = await Assert.ThrowsAsync<HubException>(() => client.DownloadRepoAsync("org/name", target));
            Assert.Contains($"checksum mismatch for '{path}'", e.Message);
            Assert.Contains(kind, e.Message);
        }
        hub.Corrupt.Clear();
        await client.DownloadRepoAsync("org/name", target);
        AssertSameFolder(source, target);
        hub.NamesOnly = false;

        // a corrupted file already in place is fetched again
        hub.Corrupt.Clear();
        await client.DownloadRepoAsync("org/name", target);
        File.WriteAllText(Path.Combine(target, "unet/config.json"), """{"in_channels": 9}""");
        await client.DownloadRepoAsync("org/name", target);
        AssertSameFolder(source, target);
    }

    [Fact]
    public async Task Private_gated_and_missing_repositories_fail_with_clear_messages()
    {
        var source = WriteFolder("source");
        using var hub = new MockHub();
        hub.AddFolder("org/private", source);
        hub.AddFolder("org/gated", source);
        hub.AddFolder("org/open", source);
        hub.Private.Add("org/private");
        hub.Gated.Add("org/gated");
        var target = Path.Combine(_dir, "download");

        using (var anonymous = new HubClient(hub.Endpoint))
        {
            var e401 = await Assert.ThrowsAsync<HubException>(() => anonymous.ListAsync("org/private"));
            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, e401.Status);
            Assert.Contains("HF_TOKEN", e401.Message);
            Assert.Contains("org/private", e401.Message);
            var gated = await Assert.ThrowsAsync<HubException>(() => anonymous.ListAsync("org/gated"));
            Assert.Contains($"accept its licence at {hub.Endpoint}/org/gated", gated.Message);
            var unknown = await Assert.ThrowsAsync<HubException>(() => anonymous.ListAsync("org/unknown"));
            Assert.Contains("org/unknown", unknown.Message);
            var revision = await Assert.ThrowsAsync<HubException>(() => anonymous.ListAsync("org/open", "v9"));
            Assert.Equal(System.Net.HttpStatusCode.NotFound, revision.Status);
            Assert.Contains("revision not found in org/open", revision.Message);
            var info = await anonymous.ListAsync("org/open");
            var missing = await Assert.ThrowsAsync<HubException>(() => anonymous.DownloadAsync(info, new HubFile("unet/nothing.json", null, null, null), target));
            Assert.Contains("'unet/nothing.json' of org/open not found", missing.Message);
            Assert.Throws<ArgumentException>(() => HubClient.CheckRepoId("../etc"));
        }
        using (var wrong = new HubClient(hub.Endpoint, "hf_wrong"))
        {
            var e403 = await Assert.ThrowsAsync<HubException>(() => wrong.ListAsync("org/gated"));
            Assert.Equal(System.Net.HttpStatusCode.Forbidden, e403.Status);
            Assert.Contains("gated", e403.Message);
            Assert.Contains($"{hub.Endpoint}/org/gated", e403.Message);
        }
        // HF_TOKEN goes as a bearer token
        Environment.SetEnvironmentVariable("HF_TOKEN", hub.RequiredToken);
        using var client = new HubClient(hub.Endpoint);
        await client.DownloadRepoAsync("org/gated", target);
        AssertSameFolder(source, target);
        Assert.Contains(hub.Log, l => l.StartsWith("GET /api/models/org/gated", StringComparison.Ordinal) && l.EndsWith($"Bearer {hub.RequiredToken}", StringComparison.Ordinal));
    }
}

/// <summary><c>elect download</c> against <see cref="MockHub"/> through <c>HF_ENDPOINT</c>.</summary>
[Collection("hub")]
public sealed class DownloadCommandTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "elect-dl-" + Guid.NewGuid().ToString("N"));

    public DownloadCommandTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        Environment.SetEnvironmentVariable("HF_ENDPOINT", null);
        Environment.SetEnvironmentVariable("HF_TOKEN", null);
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    [Fact]
    public void Download_command_fetches_a_repository_and_reports_errors_in_one_line()
    {
        var source = Path.Combine(_dir, "source");
        Directory.CreateDirectory(Path.Combine(source, "unet"));
        File.WriteAllText(Path.Combine(source, "model_index.json"), """{"unet": ["diffusers", "UNet2DConditionModel"]}""");
        File.WriteAllText(Path.Combine(source, "unet", "config.json"), "{}");
        File.WriteAllBytes(Path.Combine(source, "unet", "diffusion_pytorch_model.safetensors"), new byte[4096]);
        using var hub = new MockHub();
        hub.AddFolder("org/name", source);
        Environment.SetEnvironmentVariable("HF_ENDPOINT", hub.Endpoint);
        var target = Path.Combine(_dir, "D");
        var (code, stdout, stderr) = CliHarness.Run("download", "org/name", "--local-dir", target);
        Assert.True(code == 0, stderr);
        Assert.Equal(target, stdout.Trim());
        Assert.Equal(new byte[4096], File.ReadAllBytes(Path.Combine(target, "unet", "diffusion_pytorch_model.safetensors")));

        (code, _, stderr) = CliHarness.Run("download", "org/missing", "--local-dir", target);
        Assert.Equal(1, code);
        Assert.StartsWith("elect: error: ", stderr.Split('\n').First(l => l.StartsWith("elect:", StringComparison.Ordinal)));
        Assert.Contains("org/missing", stderr);
        (code, _, stderr) = CliHarness.Run("download", "nosuchmodel");
        Assert.Equal(1, code);
        Assert.Contains("neither a model", stderr);
        (code, _, _) = CliHarness.Run("download", "org/name", "--precision", "fp8");
        Assert.Equal(2, code);
    }
}
