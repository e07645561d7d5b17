using Elect.Imaging;
using Elect.Modeling;
using Elect.Models.Autoencoders;
using Elect.Models.Unets;
using Elect.Pipelines.InstructPix2Pix;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Pipelines.Mgie;

/// <summary>
/// Builds MGIE's multimodal LLM from the LLaVA folder, the vision-tower folder and the tensors of <c>mllm.pt</c> (other
/// than the edit head's; the caller keeps ownership of them and disposes them when the factory returns).
/// </summary>
public delegate IMultimodalInstructor InstructorFactory(string llavaDir, string visionTowerDir, IReadOnlyDictionary<string, Tensor> mllmTensors,
                                                        Device device, ScalarType dtype);

/// <summary>
/// Where the parts of an MGIE checkpoint live below <c>--model-path</c> (default <c>checkpoints/mgie</c>), as the MGIE and
/// ELECT repositories lay them out (<c>_ckpt/LLaVA-7B-v1</c>, <c>_ckpt/mgie_7b/{mllm,unet}.pt</c>) plus the two folders
/// they fetch from the Hub at run time.
/// </summary>
public sealed record MgiePaths(string Folder, string Llava, string Mllm, string Unet, string VisionTower, string InstructPix2Pix)
{
    /// <summary>
    /// The files the mgie family reads and which of their tensors it keeps: the LLaVA shards, the vision tower's
    /// <c>vision_model.*</c>, <c>mllm.pt</c> (held whole while its rows replace LLaVA's embeddings), <c>unet.pt</c>,
    /// the InstructPix2Pix VAE.
    /// </summary>
    public IReadOnlyList<WeightSource> WeightSources() =>
    [
        .. WeightLoader.FindWeightFiles(Llava).Select(f => new WeightSource(f)),
        .. WeightLoader.FindWeightFiles(VisionTower).Select(f => new WeightSource(f, k => !Models.Vision.ClipVisionModel.IsUnusedKey(k))),
        new WeightSource(Mllm),
        new WeightSource(Unet),
        .. WeightLoader.FindWeightFiles(Path.Combine(InstructPix2Pix, "vae")).Select(f => new WeightSource(f)),
    ];

    public const string LlavaFolder = "LLaVA-7B-v1";
    public const string MllmFile = "mgie_7b/mllm.pt";
    public const string UnetFile = "mgie_7b/unet.pt";
    public const string InstructPix2PixFolder = "instruct-pix2pix";

    /// <summary>LLaVA's <c>mm_vision_tower</c> when its config does not name one.</summary>
    public const string DefaultVisionTower = "openai/clip-vit-large-patch14";

    private const string Where = "(--model-path names the MGIE folder; see the README's section 'MGIE')";

    /// <summary>
    /// The parts of <paramref name="folder"/>; a missing one throws naming the path and what belongs there. The vision
    /// tower is LLaVA's <c>mm_vision_tower</c>: that folder if it exists, else <c>{folder}/{its last name part}</c>
    /// (<c>clip-vit-large-patch14</c>). The InstructPix2Pix folder (VAE, scheduler, UNet config) is
    /// <c>{folder}/instruct-pix2pix</c>, else the instructpix2pix family's checkpoint beside it
    /// (<c>{folder}/../instructpix2pix</c>).
    /// </summary>
    public static MgiePaths Resolve(string folder)
    {
        if (File.Exists(folder))
            throw new ArgumentException($"{folder} is a file; the mgie family takes its checkpoint folder (LLaVA-7B-v1/, mgie_7b/, clip-vit-large-patch14/, instruct-pix2pix/) {Where}");
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"MGIE checkpoint folder not found: {folder} {Where}");
        var llava = Path.Combine(folder, LlavaFolder);
        var llavaConfig = Path.Combine(llava, "config.json");
        if (!File.Exists(llavaConfig))
            throw new FileNotFoundException($"missing {llavaConfig}: the merged LLaVA-7B weights (LLaMA-7B + liuhaotian/LLaVA-Lightning-7B-delta-v1-1) belong in {llava} {Where}", llavaConfig);
        var mllm = Path.Combine(folder, MllmFile);
        if (!File.Exists(mllm))
            throw new FileNotFoundException($"missing {mllm}: MGIE's LLM token embeddings and edit head, from mgie_7b.tar.gz {Where}", mllm);
        var unet = Path.Combine(folder, UnetFile);
        if (!File.Exists(unet))
            throw new FileNotFoundException($"missing {unet}: MGIE's UNet weights, from mgie_7b.tar.gz {Where}", unet);
        var tower = ModelConfig.Load(llavaConfig).String("mm_vision_tower", DefaultVisionTower);
        var vision = Directory.Exists(tower) ? tower : Path.Combine(folder, tower.TrimEnd('/').Split('/')[^1]);
        if (!File.Exists(Path.Combine(vision, "config.json")))
            throw new FileNotFoundException($"missing {Path.Combine(vision, "config.json")}: LLaVA's vision tower {tower} (CLIPVisionModel folder, e.g. the Hub's {tower}) belongs in {vision} {Where}", Path.Combine(vision, "config.json"));
        var ip2p = Path.Combine(folder, InstructPix2PixFolder);
        if (!Directory.Exists(ip2p))
        {
            var beside = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(folder))!, "instructpix2pix");
            if (!Directory.Exists(beside))
                throw new DirectoryNotFoundException($"missing {ip2p}: timbrooks/instruct-pix2pix's vae/, scheduler/ and unet/config.json (or the instructpix2pix checkpoint at {beside}) {Where}");
            ip2p = beside;
        }
        foreach (var part in new[] { "unet/config.json", "vae/config.json", "scheduler/scheduler_config.json" })
            if (!File.Exists(Path.Combine(ip2p, part)))
                throw new FileNotFoundException($"missing {Path.Combine(ip2p, part)}: MGIE runs timbrooks/instruct-pix2pix's VAE and scheduler and its UNet architecture {Where}", Path.Combine(ip2p, part));
        return new MgiePaths(folder, llava, mllm, unet, vision, ip2p);
    }
}

/// <summary>
/// MGIE (apple/ml-mgie, as the ELECT repository runs it): timbrooks/instruct-pix2pix's pipeline (VAE, Euler-ancestral
/// scheduler, UNet architecture) with MGIE's UNet weights, conditioned not by CLIP text but by MGIE's multimodal LLM:
/// LLaVA-7B reads the image and the instruction, writes the expressive instruction, and its eight [IMG] hidden states pass
/// through the edit head (<see cref="EditMapper"/>) to the UNet's [1, 77, 768] prompt embeddings. The "negative" prompt
/// embeddings are MGIE's NULL, <c>edit_head(zeros, emb)</c>, computed once at load; the branches are
/// [embeds, NULL, NULL] as diffusers' <c>_encode_prompt</c> lays out given embeddings. The LLM runs once per edit in
/// <see cref="Prepare"/>, before the candidates.
/// </summary>
public sealed class MgieModel : InstructPix2PixModel
{
    public const string FamilyName = "mgie";

    private readonly Tensor _emb;
    private readonly Tensor _null;

    private MgieModel(IMultimodalInstructor? instructor, EditMapper editHead, Tensor emb, UNet2DConditionModel unet, AutoencoderKL vae,
                      ModelConfig schedulerConfig, Device device, ScalarType dtype)
        : base(FamilyName, null, null, unet, vae, schedulerConfig, device, dtype)
    {
        if (editHead.Config.Output != unet.CrossAttentionDim)
            throw new InvalidDataException($"MGIE's edit head writes {editHead.Config.Output}-wide embeddings, the UNet's cross_attention_dim is {unet.CrossAttentionDim}");
        if (instructor is not null && instructor.HiddenSize != editHead.Config.LlmHidden)
            throw new InvalidDataException($"the multimodal LLM's hidden size {instructor.HiddenSize} is not the edit head's input {editHead.Config.LlmHidden}");
        Instructor = instructor;
        EditHead = editHead;
        _emb = emb;
        using var _ = no_grad();
        using var zeros = torch.zeros(1, 8, editHead.Config.LlmHidden, dtype: dtype, device: device);
        _null = editHead.call(zeros, emb).DetachFromDisposeScope();   // lives as long as the model, not a caller's scope
        emb.DetachFromDisposeScope();
    }

    /// <summary>The multimodal LLM; null for a model built without one (the embeddings are given: tests, bench).</summary>
    public IMultimodalInstructor? Instructor { get; }

    public EditMapper EditHead { get; }

    /// <summary>MGIE's NULL conditioning <c>edit_head(zeros(1, 8, H), emb)</c> [1, 77, 768] (model dtype).</summary>
    public Tensor NullEmbeds => _null;

    /// <summary>
    /// Loads an MGIE checkpoint folder (<see cref="MgiePaths"/>): <c>mllm.pt</c> once (the edit head and <c>emb</c> for this
    /// model, the rest for <paramref name="instructor"/>), <c>unet.pt</c> into the InstructPix2Pix UNet built from
    /// <c>instruct-pix2pix/unet/config.json</c> (strictly; fp16 stored, converted to <paramref name="dtype"/>), the VAE and the
    /// scheduler config of the InstructPix2Pix folder. Both pickles go through the restricted, non-executing reader.
    /// </summary>
    public static MgieModel Load(string folder, Device device, ScalarType dtype, InstructorFactory instructor)
    {
        var paths = MgiePaths.Resolve(folder);
        TorchRuntime.Initialize(device);
        var disposables = new List<IDisposable>();
        Dictionary<string, Tensor>? mllm = null;
        try
        {
            var (head, emb) = LoadEditHead(paths.Mllm, device, dtype, out mllm);
            disposables.Add(head);
            disposables.Add(emb);
            var unet = LoadUnet(paths, device, dtype);
            disposables.Add(unet);
            var vae = AutoencoderKL.FromPretrained(Path.Combine(paths.InstructPix2Pix, "vae"), dtype, device);
            disposables.Add(vae);
            var scheduler = ModelConfig.Load(Path.Combine(paths.InstructPix2Pix, "scheduler", "scheduler_config.json"));
            var llm = instructor(paths.Llava, paths.VisionTower, mllm, device, dtype);
            disposables.Add(llm);
            return new MgieModel(llm, head, emb, unet, vae, scheduler, device, dtype);
        }
        catch
        {
            for (int k = disposables.Count - 1; k >= 0; k--) disposables[k].Dispose();
            throw;
        }
        finally
        {
            if (mllm is not null) foreach (var t in mllm.Values) t.Dispose();   // the factory copies what it keeps
        }
    }

    /// <summary>A model from components: <paramref name="instructor"/> may be null when the [IMG] states are given (<see cref="PrepareWithStates"/>).</summary>
    public static MgieModel FromComponents(IMultimodalInstructor? instructor, EditMapper editHead, Tensor emb, UNet2DConditionModel unet,
                                           AutoencoderKL vae, ModelConfig schedulerConfig, Device device, ScalarType dtype)
        => new(instructor, editHead, emb, unet, vae, schedulerConfig, device, dtype);

    /// <summary>
    /// Reads <paramref name="mllmPath"/> (restricted reader) and builds the edit head and <c>emb</c> [1, 8, H] from it
    /// (model dtype, on <paramref name="device"/>); <paramref name="mllm"/> holds the file's tensors (CPU, stored dtype)
    /// for the LLM, the edit head's and <c>emb</c> removed and disposed.
    /// </summary>
    public static (EditMapper Head, Tensor Emb) LoadEditHead(string mllmPath, Device device, ScalarType dtype, out Dictionary<string, Tensor> mllm)
    {
        mllm = Checkpoint.ReadTensors(mllmPath);
        try
        {
            if (!mllm.TryGetValue("emb", out var emb))
                throw new InvalidDataException($"{mllmPath}: missing tensor 'emb' (MGIE's learned [IMG] embedding, [1, 8, hidden])");
            var head = EditMapper.FromWeights(mllm, mllmPath, device, dtype);
            var h = head.Config.LlmHidden;
            if (!(emb.shape.SequenceEqual([1L, 8, h]) || emb.shape.SequenceEqual([8L, h])))
            {
                head.Dispose();
                throw new InvalidDataException($"{mllmPath}: tensor 'emb' has shape [{string.Join(", ", emb.shape)}], MGIE's edit head expects [1, 8, {h}]");
            }
            var onDevice = emb.reshape(1, 8, h).to(dtype, device).clone();
            foreach (var key in mllm.Keys.Where(k => k == "emb" || k.StartsWith(EditMapper.Prefix, StringComparison.Ordinal)).ToList())
            {
                mllm[key].Dispose();
                mllm.Remove(key);
            }
            return (head, onDevice);
        }
        catch
        {
            foreach (var t in mllm.Values) t.Dispose();
            throw;
        }
    }

    private static UNet2DConditionModel LoadUnet(MgiePaths paths, Device device, ScalarType dtype)
    {
        var config = ModelConfig.Load(Path.Combine(paths.InstructPix2Pix, "unet", "config.json"));
        var unet = ModuleSetup.ForInference(new UNet2DConditionModel(config), dtype, device);
        try
        {
            WeightLoader.LoadFiles(unet, [paths.Unet], paths.Unet);
            return unet;
        }
        catch
        {
            unet.Dispose();
            throw;
        }
    }

    public override float DefaultTextGuidance => 7.5f;

    /// <summary>The UNet's prompt embeddings [1, 77, 768] (model dtype) of the [IMG] states [8, H] (or [1, 8, H]).</summary>
    public Tensor PromptEmbeds(Tensor imageTokenStates)
    {
        using var _ = no_grad();
        using var states = imageTokenStates.to(DType, Device);
        return EditHead.call(states, _emb);
    }

    /// <summary>The condition of an edit from given [IMG] states: prompt embeddings <c>edit_head(states, emb)</c>, negative NULL.</summary>
    public EditCondition PrepareWithStates(RgbImage image, Tensor imageTokenStates)
    {
        using var embeds = PromptEmbeds(imageTokenStates);
        return PrepareWithEmbeddings(image, embeds, _null);
    }

    /// <summary>Runs the multimodal LLM on the (resized) image and the instruction, then conditions the UNet on its [IMG] states.</summary>
    public override EditCondition Prepare(RgbImage image, string instruction, RgbImage? mask = null)
    {
        if (mask is not null) throw new NotSupportedException($"{Name} takes no mask image");
        if (Instructor is null) throw new InvalidOperationException("this MGIE model was built without its multimodal LLM");
        using var output = Instructor.Instruct(image, instruction);
        var condition = PrepareWithStates(image, output.ImageTokenStates);
        condition.Generated = new GeneratedInstruction(output.ExpressiveInstruction, output.SequenceIds.Length - output.PromptLength);
        return condition;
    }

    protected override void Dispose(bool disposing)
    {
        if (!disposing) return;
        Instructor?.Dispose();
        EditHead.Dispose();
        _emb.Dispose();
        _null.Dispose();
        base.Dispose(disposing);
    }
}
